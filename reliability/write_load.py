#!/usr/bin/env python3
"""A steady record-creating load for the crash and disk_full suites (standard library only).

    write_load.py BASE TOKEN ORG COLLECTION OUT [--workers N] [--seconds S] [--stop FILE] [--pad BYTES]

Each worker creates records over HTTP (its own keep-alive connection, reopened after any error)
until S seconds have passed or FILE exists. Every request carries a unique marker in
data.title. One line per finished request is appended (and flushed) to OUT, tab-separated:

    marker  status  content-type  record-id  problem-type  unix-time-of-the-answer

status 0 means no HTTP answer (connection refused or reset, timeout). A line is written only
once the answer is complete, so a record id in OUT is a write the server acknowledged.
"""

import argparse
import http.client
import json
import os
import threading
import time
import urllib.parse


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("token")
    p.add_argument("org")
    p.add_argument("collection")
    p.add_argument("out")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=3600)
    p.add_argument("--stop", default=None)
    p.add_argument("--pad", type=int, default=0, help="bytes of incompressible padding per record")
    p.add_argument("--timeout", type=float, default=20)
    a = p.parse_args()

    url = urllib.parse.urlsplit(a.base)
    path = f"/api/v1/orgs/{a.org}/collections/{a.collection}/records"
    headers = {"authorization": f"Bearer {a.token}", "content-type": "application/json"}
    deadline = time.monotonic() + a.seconds
    lock = threading.Lock()
    out = open(a.out, "a", buffering=1)
    run = os.urandom(3).hex()

    def done():
        return time.monotonic() >= deadline or (a.stop is not None and os.path.exists(a.stop))

    def worker(w):
        conn = None
        n = 0
        while not done():
            n += 1
            marker = f"m-{run}-{w}-{n}"
            data = {"title": marker, "status": "open"}
            if a.pad:
                data["note"] = os.urandom(a.pad // 2).hex()
            body = json.dumps({"data": data})
            status, ctype, rid, ptype = 0, "", "", ""
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=a.timeout)
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                status, ctype = resp.status, resp.getheader("content-type", "")
                try:
                    doc = json.loads(raw)
                except ValueError:
                    doc = {}
                if 200 <= status < 300:
                    rid = doc.get("id", "")
                elif isinstance(doc, dict):
                    ptype = str(doc.get("type", ""))
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            with lock:
                out.write(f"{marker}\t{status}\t{ctype}\t{rid}\t{ptype}\t{time.time():.3f}\n")
            if status == 0 or status >= 500:
                time.sleep(0.02)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(a.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()


if __name__ == "__main__":
    main()

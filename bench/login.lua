-- wrk script: password sign-ins for one account (a correct password: every request is a real
-- argon2id verification plus a session and an audit event).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"bench@example.com","password":"violet-kettle-orbit-93"}'

// Palisade console: security-key (WebAuthn) ceremonies. The server renders the ceremony's
// options in a button's data-options and a form to post the key's answer to; this script only
// converts between WebAuthn's binary fields and base64url text. Pages work without it, except
// that a security key needs it.
"use strict";

function fromBase64url(text) {
  let base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  while (base64.length % 4) base64 += "=";
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

function toBase64url(buffer) {
  let binary = "";
  for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function creationOptions(options) {
  const publicKey = options.publicKey;
  publicKey.challenge = fromBase64url(publicKey.challenge);
  publicKey.user.id = fromBase64url(publicKey.user.id);
  for (const credential of publicKey.excludeCredentials || []) credential.id = fromBase64url(credential.id);
  return { publicKey };
}

function requestOptions(options) {
  const publicKey = options.publicKey;
  publicKey.challenge = fromBase64url(publicKey.challenge);
  for (const credential of publicKey.allowCredentials || []) credential.id = fromBase64url(credential.id);
  return { publicKey };
}

function encodeCredential(credential) {
  const answer = credential.response;
  const response = { clientDataJSON: toBase64url(answer.clientDataJSON) };
  if (answer.attestationObject) response.attestationObject = toBase64url(answer.attestationObject);
  if (answer.authenticatorData) {
    response.authenticatorData = toBase64url(answer.authenticatorData);
    response.signature = toBase64url(answer.signature);
    response.userHandle = answer.userHandle ? toBase64url(answer.userHandle) : null;
  }
  return {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    extensions: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
    response,
  };
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-webauthn]")) {
    const form = button.closest("form");
    const status = document.getElementById(button.dataset.status || "");
    if (!window.PublicKeyCredential) {
      if (status) status.textContent = "This browser cannot use security keys.";
      continue;
    }
    button.hidden = false;
    button.addEventListener("click", async () => {
      button.disabled = true;
      if (status) status.textContent = "Touch your security key…";
      try {
        const options = JSON.parse(button.dataset.options);
        const credential = button.dataset.webauthn === "create"
          ? await navigator.credentials.create(creationOptions(options))
          : await navigator.credentials.get(requestOptions(options));
        form.querySelector("input[name=credential]").value = JSON.stringify(encodeCredential(credential));
        form.submit();
      } catch (error) {
        button.disabled = false;
        if (status) status.textContent = "The key did not answer (" + error.name + "). Try again.";
      }
    });
  }
});

// A resource server in Node that trusts jwt-server's access tokens knowing
// only the JWKS URL: `jose` fetches the keys, picks one by the token's kid and
// checks the signature, algorithm, issuer, audience and expiry.
//
//   npm ci
//   JWKS_URL=https://api.example.com/.well-known/jwks.json node resource-server.mjs
//
// GET any path with `Authorization: Bearer <token>`: 200 {"sub", "kid"}, or
// 401 {"error": "invalid_token", "detail"}.
import http from "node:http";
import { createRemoteJWKSet, jwtVerify } from "jose";

const jwksUrl = new URL(process.env.JWKS_URL);
const issuer = process.env.ISSUER || "jwt-server";
const audience = process.env.AUDIENCE || undefined;
const port = Number(process.env.PORT || 8081);
// Cache the key set no longer than the server says it may (its JWKS_MAX_AGE):
// a new key signs only that long after it is published.
const maxAgeMs = Number(process.env.JWKS_MAX_AGE || 300) * 1000;
const jwks = createRemoteJWKSet(jwksUrl, { cacheMaxAge: maxAgeMs, cooldownDuration: Math.min(maxAgeMs, 30000) });

function send(response, status, body) {
  response.writeHead(status, { "Content-Type": "application/json" });
  response.end(JSON.stringify(body));
}

async function verify(request) {
  const [scheme, token, ...rest] = (request.headers.authorization || "").split(" ");
  if (scheme.toLowerCase() !== "bearer" || !token || rest.length) {
    throw new Error("Authorization: Bearer <token> is required");
  }
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    requiredClaims: ["sub", "exp", "iat"],
  });
  return { sub: payload.sub, kid: protectedHeader.kid };
}

http
  .createServer((request, response) => {
    verify(request).then(
      (caller) => send(response, 200, caller),
      (error) => send(response, 401, { error: "invalid_token", detail: error.code || error.message }),
    );
  })
  .listen(port, "127.0.0.1", () => console.log(`resource server on http://127.0.0.1:${port}`));

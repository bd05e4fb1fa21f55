// A real OAuth 2.0 / OpenID provider for the tests: npm's oauth2-mock-server
// (discovery, JWKS, RS256-signed JWT access tokens), served over HTTPS with
// the test's certificate. The mock issues tokens to anyone, so this wrapper
// adds what the provider's tests need from a real issuer:
//   - client authentication: `client_secret_basic` or `client_secret_post`
//     against CLIENT_ID and the secret in SECRET_FILE (re-read per request,
//     so a test rotates it by rewriting the file);
//   - the `audience` request parameter becomes the token's `aud`;
//   - faults read from MODE_FILE per request: `ok`, `429`, `503`,
//     `redirect`, `opaque` (a non-JWT access token), `wrong-aud`;
//   - a signing key rollover whenever the number in KEYS_FILE changes: a new
//     issuer key replaces the old one, which leaves the JWKS;
//   - every issued access token appended to TOKENS_FILE (the leak scan
//     looks for them in the provider's output), every token request's client
//     auth method appended to REQUESTS_FILE.
// MOCK_MODULE is the package's dist/index.mjs. Prints `ready` once listening on 127.0.0.1:PORT.
import { readFileSync, appendFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { pathToFileURL } from 'node:url';
import { Readable } from 'node:stream';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`missing ${name}`);
  return value;
};
const port = Number(env('PORT'));
const clientId = env('CLIENT_ID');
// The package lives under the repo's .tools/node (ESM ignores NODE_PATH).
const { OAuth2Issuer, OAuth2Service } = await import(pathToFileURL(env('MOCK_MODULE')).href);
const read = (name) => readFileSync(env(name), 'utf8').trim();

// Client authentication and `aud` are decided per request in `route` below,
// before the mock's handler builds the token.
let pending = null;
// One issuer (one RS256 key) per key generation; a rollover builds a new one.
async function makeService() {
  const issuer = new OAuth2Issuer();
  issuer.url = `https://localhost:${port}`;
  await issuer.keys.generate('RS256');
  const service = new OAuth2Service(issuer);
  service.on('beforeTokenSigning', (token) => {
    token.payload.aud = pending.mode === 'wrong-aud' ? 'someone-else' : pending.audience;
    token.payload.sub = clientId;
    token.payload.client_id = clientId;
  });
  service.on('beforeResponse', (response) => {
    response.body.expires_in = 600;
    if (pending.mode === 'opaque') response.body.access_token = 'opaque-' + response.body.access_token.split('.')[2];
    appendFileSync(env('TOKENS_FILE'), response.body.access_token + '\n');
  });
  return service;
}
let generation = read('KEYS_FILE');
let service = await makeService();

const collect = (req) =>
  new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });

const deny = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

async function route(req, res) {
  // The issuer log shows every request, so a test can prove a redirect was not followed.
  process.stdout.write(`hit ${req.method} ${req.url}\n`);
  if (read('KEYS_FILE') !== generation) {
    generation = read('KEYS_FILE');
    service = await makeService();
  }
  if (req.method !== 'POST' || !req.url.startsWith('/token')) return service.requestHandler(req, res);
  const mode = read('MODE_FILE');
  if (mode === '429' || mode === '503') return deny(res, Number(mode), { error: 'temporarily_unavailable' });
  if (mode === 'redirect') {
    res.writeHead(307, { location: `https://localhost:${port}/elsewhere/token` });
    return res.end();
  }
  const raw = await collect(req);
  const form = new URLSearchParams(raw);
  const secret = read('SECRET_FILE');
  let method = null;
  const basic = req.headers.authorization;
  if (basic && basic.startsWith('Basic ')) {
    const [id, pass] = Buffer.from(basic.slice(6), 'base64').toString('utf8').split(':').map((p) => decodeURIComponent(p.replace(/\+/g, ' ')));
    if (id === clientId && pass === secret && !form.has('client_secret')) method = 'client_secret_basic';
  } else if (form.get('client_id') === clientId && form.get('client_secret') === secret) {
    method = 'client_secret_post';
  }
  if (method === null || form.get('grant_type') !== 'client_credentials') return deny(res, 401, { error: 'invalid_client' });
  appendFileSync(env('REQUESTS_FILE'), `${method} scope=${form.get('scope') ?? ''} resources=${form.getAll('resource').join(',')}\n`);
  pending = { mode, audience: form.get('audience') };
  // Hand the mock a replayable body: it parses the request stream itself.
  const replay = Object.assign(Readable.from([Buffer.from('grant_type=client_credentials')]), {
    method: req.method,
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  return service.requestHandler(replay, res);
}

const server = createServer({ key: readFileSync(env('KEY_FILE')), cert: readFileSync(env('CERT_FILE')) }, (req, res) => {
  route(req, res).catch((e) => {
    process.stderr.write(`oauth2_server: ${e}\n`);
    if (!res.headersSent) deny(res, 500, { error: 'server_error' });
  });
});
server.listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));

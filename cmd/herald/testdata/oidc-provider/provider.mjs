// An OpenID provider for Herald's identity provider tests: panva's
// oidc-provider (a certified OpenID Connect implementation), configured
// from the JSON file named by the first argument:
//
//   port                      TCP port on 127.0.0.1 (0: any free one)
//   jwks_file                 private JWKS (RSA keys); the first signs
//   client_id, client_secret  the one client, authenticating with client_secret_basic
//   redirect_uri              where the authorization code is sent
//   post_logout_redirect_uri  where RP-initiated logout may return
//   backchannel_logout_uri    where logout tokens are POSTed (session required)
//   resource, audience        the resource indicator the client asks for,
//                             and the aud of its JWT access tokens (RS256)
//   cookie_key                signs the provider's cookies
//
// It prints "oidc-provider ready issuer=<issuer URL>" once it serves, and
// one line per back-channel logout it delivered or failed to deliver.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const jwks = JSON.parse(readFileSync(cfg.jwks_file, 'utf8'));

const page = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;

const server = createServer();
server.listen(cfg.port ?? 0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: cfg.client_id,
      client_secret: cfg.client_secret,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [cfg.redirect_uri],
      post_logout_redirect_uris: cfg.post_logout_redirect_uri ? [cfg.post_logout_redirect_uri] : [],
      token_endpoint_auth_method: 'client_secret_basic',
      backchannel_logout_uri: cfg.backchannel_logout_uri,
      backchannel_logout_session_required: true,
    }],
    jwks,
    cookies: { keys: [cfg.cookie_key] },
    scopes: ['openid', 'api'],
    features: {
      devInteractions: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.body = page('Sign out', `${form}<button id="logout-yes" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>`);
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.body = page('Signed out', '<p id="signed-out">signed out</p>');
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => cfg.resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resourceIndicator) => {
          if (resourceIndicator !== cfg.resource) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: 'api',
            audience: cfg.audience,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // The session's sid in the access token, as Keycloak and Entra put
    // it there: the logout token names the session by the same sid.
    extraTokenClaims: async (ctx, token) => (token.kind === 'AccessToken' && token.sid ? { sid: token.sid } : undefined),
    ttl: { Session: 3600, Grant: 3600, Interaction: 600, IdToken: 600, AuthorizationCode: 60 },
  });
  provider.on('backchannel.success', (ctx, client, accountId, sid) => {
    console.log(`backchannel logout delivered client=${client.clientId} sub=${accountId} sid=${sid}`);
  });
  provider.on('backchannel.error', (ctx, err, client, accountId, sid) => {
    console.log(`backchannel logout failed client=${client.clientId} sub=${accountId} sid=${sid} err=${JSON.stringify(String(err))}`);
  });
  provider.on('server_error', (ctx, err) => {
    console.log(`server error ${err.stack}`);
  });
  server.on('request', provider.callback());
  console.log(`oidc-provider ready issuer=${issuer}`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));

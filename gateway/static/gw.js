/*
 * gw.js: tag-gateway's first-party, fbq-compatible browser script (docs/snippet.md).
 *
 * Edit this file, then rebuild the committed gw.min.js: `cd snippet && npm ci && npm run build`.
 * The gateway serves gw.min.js as it is; it never runs node.
 *
 * Why it is shaped like this:
 * - It drains the base code's `fbq.queue` in order and then takes calls directly, exactly like
 *   Meta's fbevents.js, so Meta's base code with its URL changed works too.
 * - Hits go to the gateway's `/tr` in the pixel's own parameter format, as a sendBeacon POST
 *   with a form body (no CORS preflight, survives page unload), else a keepalive fetch, else an
 *   image GET.
 * - Advanced-matching data from `init` is sent raw, but only to the first-party gateway, which
 *   normalizes and hashes it exactly as Meta does; it never goes to Meta from the browser.
 * - Mirroring to Meta's browser pixel is an image hit to Meta's own /tr endpoint with the same
 *   eventID (so Meta deduplicates the copies); it never needs Meta's script on the page.
 * - Pages written for fbevents.js rely on three of its habits, kept here: a PageView when a
 *   single-page app changes the URL (pushState, back/forward), unless fbq.disablePushState; one
 *   explicit PageView per pixel and page load, unless fbq.allowDuplicatePageViews; and the
 *   integration's agent from fbq('set', 'agent', ...), sent as `a` like the pixel does.
 */
((w, d) => {
  'use strict';
  const VERSION = 'gw1';
  const META_ENDPOINT = 'https://www.facebook.com/tr';
  // Meta's advanced-matching keys; anything else given to `init` stays in the page.
  const USER_KEYS = ['em', 'ph', 'fn', 'ln', 'ge', 'db', 'ct', 'st', 'zp', 'country', 'external_id'];
  const CONSENT_KEYS = ['ad_storage', 'analytics_storage', 'ad_user_data', 'ad_personalization'];
  const stub = w.fbq;
  // Already running: this script loaded twice, or Meta's own pixel owns `fbq`; do not hijack it.
  if (stub && stub.callMethod) return;

  // The gateway's /tr beside this script (`/gw/gw.js` -> `/gw/tr`, same host and scheme), unless
  // the page says otherwise with fbq('set', 'endpoint', url).
  const me = d.currentScript;
  let endpoint = me && me.src ? new URL('tr', me.src).href : '/tr';
  let mirrorAll = false;
  let options = null; // data processing options: [opts, country, state]
  let held = null; // while consent is revoked: the hits waiting for a grant
  let signals = null; // Google Consent Mode states given with fbq('consent', {...})
  let referrer = d.referrer; // in a single-page app, the URL before the last history change
  let here = location.href; // the URL of the last PageView the history sent
  const agents = {}; // pixel id ('' for every pixel) -> agent, from fbq('set', 'agent', a, id)
  const pixels = {}; // pixel id -> {ud: advanced matching, mirror: true/false/undefined}
  const order = []; // pixel ids in init order

  const newEventId = () => {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => (b + 256).toString(16).slice(1)).join('');
  };

  const cookie = (name) => (d.cookie.match('(?:^|; )' + name + '=([^;]*)') || [])[1];

  const post = (url, pairs) => {
    const body = (method) => new URLSearchParams(pairs.concat([['rqm', method]]));
    try {
      if (navigator.sendBeacon(url, body('SB'))) return;
    } catch (e) {
      // no sendBeacon, or it refused the URL: fall through
    }
    if (w.fetch) {
      // Same transport guarantees as a beacon, with cookies for the listed sibling origins.
      fetch(url, { method: 'POST', body: body('FP'), keepalive: true, credentials: 'include' })
        .catch(() => {});
    } else {
      new Image().src = url + '?' + body('GET');
    }
  };

  const deliver = (hit) => {
    post(endpoint, hit.pairs.concat(hit.ud));
    if (hit.mirror) {
      // Meta's copy: same eventID, no personal data; _fbp/_fbc as the gateway set them.
      const extra = [];
      for (const name of ['fbp', 'fbc']) {
        const value = cookie('_' + name);
        if (value) extra.push([name, value]);
      }
      new Image().src = META_ENDPOINT + '?' + new URLSearchParams(hit.pairs.concat(extra));
    }
  };

  const send = (pixelId, name, data, eventId, auto) => {
    const pixel = pixels[pixelId];
    if (name == 'PageView') {
      // fbevents.js ignores a pixel's second explicit PageView on the same page load.
      if (pixel.viewed && !auto && !fbq.allowDuplicatePageViews) return;
      pixel.viewed = true;
    }
    const pairs = [
      ['id', pixelId], ['ev', name], ['dl', location.href], ['rl', referrer],
      ['eid', eventId], ['ts', Date.now()], ['sw', screen.width], ['sh', screen.height],
      ['v', VERSION],
    ];
    const agent = agents[pixelId] || agents[''];
    if (agent) pairs.push(['a', agent]);
    if (data && typeof data == 'object') {
      for (const key in data) {
        const value = data[key];
        if (value != null) {
          pairs.push(['cd[' + key + ']', typeof value == 'object' ? JSON.stringify(value) : value]);
        }
      }
    }
    if (signals) {
      // `cs`: ad_storage, analytics_storage, ad_user_data, ad_personalization: 1, 0 or -.
      const state = (key) => ({ granted: '1', denied: '0' })[signals[key]] || '-';
      pairs.push(['cs', CONSENT_KEYS.map(state).join('')]);
    }
    if (options) {
      pairs.push(['dpo', options[0].join(',')]);
      if (options[1] != null) pairs.push(['dpoco', options[1]]);
      if (options[2] != null) pairs.push(['dpost', options[2]]);
    }
    const ud = Object.keys(pixel.ud).map((key) => ['ud[' + key + ']', pixel.ud[key]]);
    const hit = { pairs, ud, mirror: pixel.mirror == null ? mirrorAll : pixel.mirror };
    if (held) held.push(hit);
    else deliver(hit);
  };

  const eventIdOf = (opts) => (opts && opts.eventID ? String(opts.eventID) : newEventId());

  const track = (name, data, opts, auto) => {
    const eventId = eventIdOf(opts);
    for (const id of order) send(id, String(name), data, eventId, auto);
  };

  // Single-page apps: a PageView to every pixel when the app moves to another URL.
  const moved = () => {
    try {
      if (fbq.disablePushState || location.href == here) return;
      referrer = here;
      here = location.href;
      track('PageView', null, null, true);
    } catch (e) {
      // never break the app's navigation
    }
  };
  const pushState = history.pushState;
  history.pushState = function () {
    const result = pushState.apply(this, arguments);
    moved();
    return result;
  };
  w.addEventListener('popstate', moved);

  const trackSingle = (pixelId, name, data, opts) => {
    pixelId = String(pixelId);
    if (pixels[pixelId]) send(pixelId, String(name), data, eventIdOf(opts));
  };

  const commands = {
    init(pixelId, userData, opts) {
      pixelId = String(pixelId);
      let pixel = pixels[pixelId];
      if (!pixel) {
        pixel = pixels[pixelId] = { ud: {} };
        order.push(pixelId);
      }
      for (const key of USER_KEYS) {
        const value = userData && userData[key];
        if (value != null && value !== '') pixel.ud[key] = String(value);
      }
      if (opts && opts.mirror != null) pixel.mirror = !!opts.mirror;
    },
    track,
    trackCustom: track,
    trackSingle,
    trackSingleCustom: trackSingle,
    consent(action) {
      if (action && typeof action == 'object') {
        // The gateway sends each event only to destinations these signals allow.
        signals = Object.assign(signals || {}, action);
      } else if (action == 'revoke') {
        held = held || [];
      } else if (action == 'grant' && held) {
        const waiting = held;
        held = null;
        waiting.forEach(deliver);
      }
    },
    dataProcessingOptions(opts, country, state) {
      options = [[].concat(opts || []), country, state];
    },
    set(key, value, pixelId) {
      if (key == 'endpoint') endpoint = String(value);
      else if (key == 'mirror') mirrorAll = !!value;
      else if (key == 'agent') agents[pixelId == null ? '' : String(pixelId)] = String(value);
    },
  };

  const run = function (command, ...args) {
    try {
      const handler = commands[command];
      if (handler) handler(...args);
    } catch (e) {
      // A bad call must never break the page or the commands after it.
    }
  };

  const fbq = stub || function () {
    fbq.callMethod ? fbq.callMethod.apply(fbq, arguments) : fbq.queue.push(arguments);
  };
  const queued = (stub && stub.queue) || [];
  w.fbq = fbq;
  if (!w._fbq) w._fbq = fbq;
  fbq.push = fbq;
  fbq.loaded = true;
  fbq.version = '2.0';
  fbq.queue = [];
  fbq.callMethod = run;
  for (const args of queued) run(...args);
})(window, document);

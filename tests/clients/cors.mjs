// A web app on another origin calling `ra serve` from the browser with fetch, as a page using the
// API directly would: Debian's headless Chromium enforces CORS, so what the page can read is what
// the server allowed.
// usage: node cors.mjs '{"page": URL, "api": BASE_URL, "key": ..., "model": ..., "image": DATA_URI, "profile": DIR}'
// Prints one JSON line: each call's status and body, or the error the browser gave the page.
import puppeteer from 'puppeteer-core';

const args = JSON.parse(process.argv[2]);
const browser = await puppeteer.launch({
  executablePath: args.chromium ?? '/usr/bin/chromium', headless: true, userDataDir: args.profile,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage();
  await page.goto(args.page, { waitUntil: 'load', timeout: 60_000 });
  const result = await page.evaluate(async ({ api, key, model, image }) => {
    async function call(path, init) {
      try {
        const r = await fetch(api + path, init);
        return { status: r.status, body: await r.json() };
      } catch (e) {
        return { error: `${e.name}: ${e.message}` };
      }
    }
    const auth = { Authorization: `Bearer ${key}` };
    return {
      origin: location.origin,
      models: await call('v1/models', { headers: auth }),
      chat: await call('v1/chat/completions', {
        method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
        body: JSON.stringify({ model, max_tokens: 4, temperature: 0, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: image } }] }] }),
      }),
    };
  }, args);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}

// Drives the page at / of `ra serve` in Debian's headless Chromium, as a user would: types the API
// key, starts a stream on a file (or on Chromium's fake webcam), waits for caption text in the
// page, asks a question, saves a screenshot, stops the stream.
// usage: node page.mjs '{"url": ..., "key": ..., "mode": "file"|"webcam", "file": ..., "y4m": FILE,
//                        "question": ..., "screenshot": FILE, "timeoutMs": ..., "profile": DIR}'
// Prints one JSON line: what the page showed.
import puppeteer from 'puppeteer-core';

const args = JSON.parse(process.argv[2]);
const timeout = args.timeoutMs ?? 180_000;
const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'];
if (args.mode === 'webcam')
  flags.push('--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${args.y4m}`);

const browser = await puppeteer.launch({
  executablePath: args.chromium ?? '/usr/bin/chromium', headless: true, args: flags, userDataDir: args.profile, protocolTimeout: timeout,
});
const problems = [];
try {
  const page = await browser.newPage();
  page.on('pageerror', e => problems.push(`page error: ${e.message}`));
  page.on('console', m => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  await page.setViewport({ width: 1280, height: 800 });
  // The page's /page.json is held until half the key is typed, as on a slow network: the page must
  // not send a half-typed key (that would be a 401 in the console).
  let releasePageJson;
  const pageJsonHeld = new Promise(r => { releasePageJson = r; });
  const cdp = await page.createCDPSession();
  await cdp.send('Fetch.enable', { patterns: [{ urlPattern: '*/page.json' }] });
  cdp.on('Fetch.requestPaused', async e => { await pageJsonHeld; await cdp.send('Fetch.continueRequest', { requestId: e.requestId }); });
  const pageJson = page.waitForResponse(r => new URL(r.url()).pathname === '/page.json', { timeout });
  await page.goto(args.url, { waitUntil: 'load', timeout });
  const half = args.key ? Math.ceil(args.key.length / 2) : 0;
  if (args.key) await page.type('#key', args.key.slice(0, half));
  releasePageJson();
  await pageJson;
  await cdp.send('Fetch.disable');
  await page.waitForNetworkIdle({ idleTime: 300, timeout });
  if (args.key) {
    await page.type('#key', args.key.slice(half));
    await page.$eval('#key', el => el.dispatchEvent(new Event('change')));
  }
  // The file list arrives after the page and moves the buttons beside it: a click (made at an
  // element's coordinates) before it lands could hit "Watch file" instead of "Use my webcam".
  await page.waitForFunction(() => [...document.querySelectorAll('#file option')].every(o => o.textContent !== '(loading…)'), { timeout, polling: 100 });
  if (args.mode === 'webcam') {
    await page.click('#start-cam');
  } else {
    await page.waitForFunction(f => [...document.querySelectorAll('#file option')].some(o => o.value === f), { timeout }, args.file);
    await page.select('#file', args.file);
    await page.click('#start-file');
  }
  // Caption text in the DOM: a finished segment in the history, and the caption area filled.
  await page.waitForFunction(() => document.querySelectorAll('#history li').length >= 1 && document.querySelector('#caption').textContent.trim().length > 0,
    { timeout, polling: 250 });
  const result = { captionSeenAfterMs: Math.round(performance.now()) };
  if (args.question) {
    await page.type('#question', args.question);
    await page.click('#ask-button');
    await page.waitForFunction(() => [...document.querySelectorAll('#answers .a')].some(a => a.textContent.trim().length > 0), { timeout, polling: 250 });
  }
  // Let the numbers and the video catch up for the screenshot.
  await page.waitForFunction(() => document.querySelector('#hud-rate').textContent !== '–', { timeout, polling: 250 });
  if (args.mode !== 'webcam') await page.waitForFunction(() => document.querySelector('#mjpeg').naturalWidth > 0, { timeout, polling: 250 });
  Object.assign(result, await page.evaluate(() => ({
    streamId: window.raState.id,
    caption: document.querySelector('#caption').textContent.trim(),
    history: [...document.querySelectorAll('#history li')].map(li => li.textContent),
    answers: [...document.querySelectorAll('#answers li')].map(li => li.textContent.trim()),
    hud: Object.fromEntries([...document.querySelectorAll('#hud tr')].map(tr => [tr.querySelector('th').textContent, tr.querySelector('td').textContent])),
    heatmapDrawn: (() => { const c = document.querySelector('#heatmap'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; return d.some(v => v > 0); })(),
    framesSent: window.raState.sent,
    video: { mjpeg: document.querySelector('#mjpeg').naturalWidth, webcam: document.querySelector('#cam').videoWidth },
  })));
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
  await page.click('#stop');
  await page.waitForFunction(() => window.raState.id === null && document.querySelector('#status').textContent.includes('deleted'), { timeout: 60_000 });
  result.status = await page.$eval('#status', el => el.textContent);
  result.problems = problems;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}

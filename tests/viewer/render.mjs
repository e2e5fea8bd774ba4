// Opens the viewer page in headless Chromium and saves a screenshot.
// usage: node render.mjs <url> <screenshot.png> [timeout_ms]
// Prints one JSON line: {status, groups, console}.
import puppeteer from 'puppeteer-core';

const [url, screenshot, timeoutArg] = process.argv.slice(2);
const timeoutMs = Number(timeoutArg || 60000);
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--use-gl=swiftshader', '--enable-unsafe-swiftshader',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--ignore-gpu-blocklist', '--window-size=1024,768'],
});
const logs = [];
let status = 'timeout';
let groups = [];
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1024, height: 768 });
  page.on('console', (msg) => logs.push(`${msg.type()}: ${msg.text()}`.slice(0, 500)));
  page.on('pageerror', (err) => logs.push(`pageerror: ${err.message}`.slice(0, 500)));
  page.on('response', (res) => {
    if (res.status() >= 400) logs.push(`http ${res.status()}: ${res.url()}`.slice(0, 300));
  });
  page.on('workercreated', (worker) => {
    logs.push(`worker: ${worker.url()}`.slice(0, 300));
    worker.on?.('console', (msg) => logs.push(`worker ${msg.type()}: ${msg.text()}`.slice(0, 500)));
  });
  page.on('requestfailed', (req) => logs.push(`requestfailed: ${req.url()}`.slice(0, 300)));
  await page.goto(url, { waitUntil: 'load', timeout: timeoutMs });
  await page.waitForFunction(() => window.__status !== undefined, { timeout: timeoutMs });
  status = await page.evaluate(() => window.__status);
  groups = await page.evaluate(() => window.__groups || []);
  await page.waitForNetworkIdle({ idleTime: 1500, timeout: timeoutMs }).catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, 2000));
  await page.screenshot({ path: screenshot });
} catch (error) {
  status = 'error: ' + error.message;
} finally {
  await browser.close();
}
console.log(JSON.stringify({ status, groups, console: logs.filter((l) => !l.startsWith('debug')).slice(-150) }));

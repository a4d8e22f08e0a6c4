// Two headless Chromium pages on the server's try-it page, in one room: both type at once,
// one chats and changes the language. Prints what each page and the server ended with, as
// JSON (checked by tests/test_try_page.py). Waits poll on a timer: a page in the background
// gets no animation frames.
// Usage: node try_page.mjs <server url> <chromium executable>
import puppeteer from "puppeteer-core";

const [url, chromium] = process.argv.slice(2);
const WORDS = 15;
const room = "TRY" + Date.now().toString(36).toUpperCase();
const words = (who) => Array.from({ length: WORDS }, (_, i) => `${who}${i} `).join("");

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const open = async (name) => {
    const page = await browser.newPage();
    page.on("console", (message) => console.error(name, "console:", message.text()));
    await page.goto(`${url}/?room=${room}&name=${name}`);
    return page;
  };
  const ann = await open("Ann");
  const bob = await open("Bob");
  for (const page of [ann, bob]) {
    try {
      await page.waitForFunction(
        () => document.querySelectorAll("#users li").length === 2 && !document.getElementById("code").disabled,
        { timeout: 10000, polling: 100 },
      );
    } catch (error) {
      for (const [who, p] of [["ann", ann], ["bob", bob]]) {
        const seen = await p.evaluate(() => [document.getElementById("status").textContent, document.getElementById("users").textContent, document.getElementById("code").disabled]);
        console.error(who, JSON.stringify(seen));
      }
      throw error;
    }
  }
  // Ann types at the end of the text, Bob at its start, at the same time.
  await ann.focus("#code");
  await ann.$eval("#code", (el) => el.setSelectionRange(el.value.length, el.value.length));
  await bob.focus("#code");
  await bob.$eval("#code", (el) => el.setSelectionRange(0, 0));
  await Promise.all([
    ann.keyboard.type(words("ann"), { delay: 20 }),
    bob.keyboard.type(words("bob"), { delay: 20 }),
  ]);
  // Chat and language.
  await ann.type("#say", "hello from Ann");
  await ann.keyboard.press("Enter");
  await ann.select("#language", "python");
  await bob.waitForFunction(() => document.getElementById("language").value === "python", {
    timeout: 10000,
    polling: 100,
  });
  await bob.waitForFunction(
    () => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes("hello from Ann")),
    { timeout: 10000, polling: 100 },
  );
  // Settled: both pages show the same text, and it no longer changes.
  const text = (page) => page.$eval("#code", (el) => el.value);
  let last = null;
  for (let tries = 0; tries < 100; tries++) {
    const [a, b] = [await text(ann), await text(bob)];
    if (a === b && a === last) break;
    last = a === b ? a : null;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await bob.waitForFunction(() => document.getElementById("saved").textContent.startsWith("saved v"), {
    timeout: 10000,
    polling: 100,
  });
  const session = await (await fetch(`${url}/api/sessions/${room}`)).json();
  console.log(
    JSON.stringify({
      room,
      typed: { ann: words("ann"), bob: words("bob") },
      texts: [await text(ann), await text(bob)],
      stored: session.session.code,
      language: session.session.language,
      saved: await bob.$eval("#saved", (el) => el.textContent),
    }),
  );
} finally {
  await browser.close();
}

// The chat demo in headless Chromium: pages served by wsplice's web root join a channel on
// a real ngircd through wsplice's lines mode, with the demo's own configs (ports rewritten).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
    ROOT, fromConf, launchBrowser, screenshot, startNgircd, startWsplice, stopWsplice, testDirs, waitFor,
} from './lib.mjs';

const BURST = 500;

// conf/demo/wsplice-demo.ini with a test port, the test's ngircd, and an absolute web root.
function demoIni(ircPort, bind = '127.0.0.1:0') {
    return fromConf('conf/demo/wsplice-demo.ini', [
        [/^bind = .*$/m, `bind = ${bind}`],
        [/^target = .*$/m, `target = 127.0.0.1:${ircPort}`],
        [/^web_root = .*$/m, `web_root = ${path.join(ROOT, 'conf', 'demo', 'www')}`],
    ]);
}

// ngircd, wsplice in front of it with the demo's config, and a browser.
async function startChat(t, name) {
    const dirs = testDirs(t, name);
    const irc = await startNgircd(t, dirs);
    const gw = await startWsplice(t, demoIni(irc.port), dirs);
    const browser = await launchBrowser(t, dirs);
    return { dirs, irc, gw, port: gw.ports.demo, browser };
}

// Open the page as a new visitor would, answer the nickname prompt, wait for the channel.
async function join(browser, port, nick) {
    const page = await browser.newPage();
    const resp = await page.goto(`http://127.0.0.1:${port}/`);
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()['content-type'], /^text\/html/);
    await page.waitForSelector('body[data-state="nick"]');
    await page.fill('#nick', nick);
    await page.click('#nick-form button[type="submit"]');
    await page.waitForSelector('body[data-state="joined"]');
    return page;
}

// Text of the channel messages from 'nick' in the page's log, oldest first.
const messagesFrom = (page, nick) =>
    page.$$eval(`#log li.msg[data-nick="${nick}"] .text`, (els) => els.map((e) => e.textContent));

async function say(page, text) {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
}

test('two chat pages talk through wsplice and ngircd; a 500-message burst arrives in order', { timeout: 180000 }, async (t) => {
    const { dirs, gw, port, browser } = await startChat(t, 'chat');
    let alice = null;
    let bob = null;
    try {
        alice = await join(browser, port, 'alice');
        bob = await join(browser, port, 'bob');
        // Join notices and the user list come from the server's JOIN and NAMES replies.
        await alice.waitForSelector('#log li.join[data-nick="bob"]');
        await waitFor('both in the user list', async () =>
            JSON.stringify(await bob.$$eval('#users li', (els) => els.map((e) => e.textContent))) === '["alice","bob"]');
        assert.match(await bob.textContent('#topic'), /frame_mode = lines/);

        await say(alice, 'hello from alice');
        await waitFor('bob to see alice', async () => (await messagesFrom(bob, 'alice')).includes('hello from alice'));
        const reply = 'hi alice! ünïcödé survives the trip';
        await say(bob, reply);
        await waitFor('alice to see bob', async () => (await messagesFrom(alice, 'bob')).includes(reply));
        await screenshot(alice, dirs.out, 'conversation');
        // Characters beyond the BMP and CJK (this Chromium may lack the fonts to draw them).
        const wide = '漢字 and 👋 too';
        await say(bob, wide);
        await waitFor('alice to see the wide text', async () => (await messagesFrom(alice, 'bob')).includes(wide));

        // A paste of 500 lines is 500 PRIVMSGs sent at once.
        const burst = Array.from({ length: BURST }, (_, i) => `burst ${String(i + 1).padStart(3, '0')} ${'x'.repeat((i % 50) + 1)}`);
        await say(alice, burst.join('\n'));
        let got = [];
        await waitFor(`bob to get ${BURST} messages`, async () => {
            got = (await messagesFrom(bob, 'alice')).filter((m) => m.startsWith('burst '));
            return got.length >= BURST;
        }, 60000, () => `bob has ${got.length}; last: ${got.slice(-3).join(' | ')}`);
        assert.deepEqual(got, burst);
        assert.deepEqual((await messagesFrom(alice, 'alice')).filter((m) => m.startsWith('burst ')), burst);
        await screenshot(alice, dirs.out, 'alice');
        await screenshot(bob, dirs.out, 'bob');

        // Closing a page quits; the other page shows it leaving.
        await bob.close();
        bob = null;
        await alice.waitForSelector('#log li.part[data-nick="bob"]');
        await screenshot(alice, dirs.out, 'alice-after-bob-left');
    } catch (err) {
        if (alice) await screenshot(alice, dirs.out, 'failure-alice');
        if (bob) await screenshot(bob, dirs.out, 'failure-bob');
        throw err;
    }
    assert.deepEqual(browser.problems, []);
    // Bob's page sent QUIT and a close 1000; whichever side the gateway saw finish first
    // (the client's Close, or ngircd hanging up after the QUIT), the close is clean.
    assert.match(gw.log(), /session s=\d+ open .*route=irc/);
    assert.match(gw.log(), /session s=\d+ close .*route=irc .*code=1000 by=(client|backend)/);
    await stopWsplice(gw);
});

test('the chat page reconnects with backoff after the gateway restarts', { timeout: 180000 }, async (t) => {
    const { dirs, irc, gw, port, browser } = await startChat(t, 'chat-reconnect');
    const page = await join(browser, port, 'carol');
    try {
        // SIGTERM drains: every session gets close 1001 (going away).
        await stopWsplice(gw);
        await page.waitForSelector('#log li.notice >> text=Disconnected (1001');
        // The page counts down to its next try (which fails until a gateway is back).
        await page.waitForFunction(() => document.body.dataset.state === 'waiting' &&
            /reconnecting in \d+ s/.test(document.getElementById('status').textContent));
        await screenshot(page, dirs.out, 'waiting');
        // A new gateway on the same port: the page comes back by itself, as the same user.
        const gw2 = await startWsplice(t, demoIni(irc.port, `127.0.0.1:${port}`), { ...dirs, name: 'wsplice-2' });
        await page.waitForSelector('body[data-state="joined"]', { timeout: 30000 });
        const joins = await page.$$eval('#log li.notice', (els) => els.filter((e) => /You joined/.test(e.textContent)).length);
        assert.equal(joins, 2);
        // Back in the channel for real: someone else hears carol.
        const dave = await join(browser, port, 'dave');
        await say(page, 'back again');
        await waitFor('dave to hear carol', async () => (await messagesFrom(dave, 'carol')).includes('back again'));
        await screenshot(page, dirs.out, 'reconnected');
        await stopWsplice(gw2);
    } catch (err) {
        await screenshot(page, dirs.out, 'failure');
        throw err;
    }
});

test('a second visitor with a taken nickname joins as nickname_', { timeout: 180000 }, async (t) => {
    const { dirs, gw, port, browser } = await startChat(t, 'chat-nick-taken');
    const first = await join(browser, port, 'erin');
    const second = await join(browser, port, 'erin');
    try {
        assert.match(await second.textContent('#status'), /^erin_ in #wsplice$/);
        await first.waitForSelector('#log li.join[data-nick="erin_"]');
        await say(second, 'same name, different person');
        await waitFor('erin to hear erin_', async () =>
            (await messagesFrom(first, 'erin_')).includes('same name, different person'));
        await screenshot(second, dirs.out, 'second');
    } catch (err) {
        await screenshot(second, dirs.out, 'failure');
        throw err;
    }
    assert.deepEqual(browser.problems, []);
    await stopWsplice(gw);
});

// noVNC in headless Chromium, served by wsplice's web root, connects through wsplice to
// a real Xvnc; the test reads the canvas and checks the colours it knows are on the
// screen, then disconnects and checks that wsplice logged a clean close. Over ws:// and
// over wss:// with a test CA the browser trusts through its own certificate store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
    HERE, PYTHON, Service, fromConf, launchBrowser, makeTrustedPki, screenshot, startWsplice, startXvnc,
    stopWsplice, testDirs, waitFor,
} from './lib.mjs';

const ROOT_RGB = [0x30, 0x60, 0xc0]; // the X root window
const WINDOW_RGB = [0xe0, 0xa0, 0x20]; // one window on it
const WIN = { x: 100, y: 80, width: 200, height: 120 };
const hex = (rgb) => rgb.map((c) => c.toString(16).padStart(2, '0')).join('');

// Points to check: well inside the window, its corners, just outside it, and the root.
const PROBES = [
    [10, 10, ROOT_RGB],
    [630, 470, ROOT_RGB],
    [WIN.x + WIN.width / 2, WIN.y + WIN.height / 2, WINDOW_RGB],
    [WIN.x, WIN.y, WINDOW_RGB],
    [WIN.x + WIN.width - 1, WIN.y + WIN.height - 1, WINDOW_RGB],
    [WIN.x - 1, WIN.y, ROOT_RGB],
    [WIN.x + WIN.width, WIN.y + WIN.height - 1, ROOT_RGB],
];

// Debian's novnc has no package.json, which noVNC 1.3 fetches to show its version.
const KNOWN_PROBLEMS = [/Failed to load resource.*404/, /Couldn't fetch package\.json/];

async function desktop(t, dirs) {
    const x = await startXvnc(t, dirs);
    const paint = new Service(
        t, 'xpaint',
        [PYTHON, path.join(HERE, 'xpaint.py'), x.display, hex(ROOT_RGB), String(WIN.x), String(WIN.y),
            String(WIN.width), String(WIN.height), hex(WINDOW_RGB)],
        dirs
    );
    await paint.waitLog(/^ready$/m);
    return x;
}

// The shipped example, conf/demo/novnc.ini, with the test's port, target and certificate.
function novncIni(xvncPort, tls) {
    const edits = [
        [/^bind = .*$/m, 'bind = 127.0.0.1:0'],
        [/^target = .*$/m, `target = 127.0.0.1:${xvncPort}`],
    ];
    if (tls) {
        edits.push([/^;tls_cert = .*$/m, `tls_cert = ${tls.cert}`]);
        edits.push([/^;tls_key = .*$/m, `tls_key = ${tls.key}`]);
    }
    return fromConf('conf/demo/novnc.ini', edits);
}

async function canvasPixels(page) {
    return page.evaluate((probes) => {
        const canvas = document.querySelector('#noVNC_container canvas');
        if (!canvas || canvas.width === 0) return null;
        const g = canvas.getContext('2d');
        return {
            size: [canvas.width, canvas.height],
            pixels: probes.map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3))),
        };
    }, PROBES);
}

async function viewDesktop(t, { scheme, tls, name }) {
    const dirs = testDirs(t, name);
    const x = await desktop(t, dirs);
    const gw = await startWsplice(t, novncIni(x.port, tls), dirs);
    const port = gw.ports.novnc;
    const browser = await launchBrowser(t, { tmp: dirs.tmp, home: tls && tls.home });
    const page = await browser.newPage();
    try {
        // The page and noVNC's scripts come from wsplice's web root; noVNC then opens
        // ws(s)://<same host:port>/websockify.
        const resp = await page.goto(`${scheme}://127.0.0.1:${port}/vnc.html?autoconnect=true&resize=off`);
        assert.equal(resp.status(), 200);
        assert.match(resp.headers()['content-type'], /^text\/html/);
        const status = await waitFor(
            'noVNC to connect',
            async () => {
                const text = await page.textContent('#noVNC_status');
                return /Connected/.test(text || '') ? text : null;
            },
            15000,
            () => gw.log()
        );
        assert.match(status, tls ? /Connected \(encrypted\)/ : /Connected \(unencrypted\)/);
        // Poll until the first framebuffer update has painted every probe as expected.
        const expected = PROBES.map((p) => p[2]);
        let seen = null;
        await waitFor('the desktop in the canvas', async () => {
            seen = await canvasPixels(page);
            return seen && JSON.stringify(seen.pixels) === JSON.stringify(expected);
        }, 15000, () => JSON.stringify(seen));
        assert.deepEqual(seen.size, [640, 480]);
        assert.deepEqual(seen.pixels, expected);
        await screenshot(page, dirs.out, 'connected');

        const open = gw.log().match(/session s=(\d+) open .*route=vnc/);
        assert.ok(open, gw.log());
        // Disconnect the way a user does: the control bar's disconnect button.
        await page.evaluate(() => document.getElementById('noVNC_disconnect_button').click());
        await waitFor('noVNC to disconnect', async () => /Disconnected/.test((await page.textContent('#noVNC_status')) || ''));
        // A browser's close() without a code sends an empty Close frame: 1005, by the client.
        const close = await gw.waitLog(new RegExp(`session s=${open[1]} close .*code=(\\d+) by=(\\w+)`));
        assert.ok(['1000', '1005'].includes(close[1]), close[0]);
        assert.equal(close[2], 'client', close[0]);
        await screenshot(page, dirs.out, 'disconnected');
    } catch (err) {
        await screenshot(page, dirs.out, 'failure');
        throw err;
    }
    const problems = browser.problems.filter((p) => !KNOWN_PROBLEMS.some((re) => re.test(p)));
    assert.deepEqual(problems, []);
    await stopWsplice(gw);
    return { gw, browser };
}

test('noVNC over ws:// shows the Xvnc desktop and disconnects cleanly', { timeout: 180000 }, async (t) => {
    await viewDesktop(t, { scheme: 'http', tls: null, name: 'novnc-ws' });
});

test('noVNC over wss:// with a CA the browser trusts', { timeout: 180000 }, async (t) => {
    const dirs = testDirs(t, 'novnc-wss-pki');
    const pki = makeTrustedPki(dirs.tmp);
    await viewDesktop(t, { scheme: 'https', tls: pki, name: 'novnc-wss' });

    // The same page in a browser whose store lacks the CA is refused: the trust above
    // came from the NSS database, not from a flag that ignores certificate errors.
    const gw = await startWsplice(t, novncIni(1, pki), dirs);
    const browser = await launchBrowser(t, { tmp: dirs.tmp });
    const page = await browser.newPage();
    // (Chromium cannot screenshot its certificate error page; the error is the evidence.)
    await assert.rejects(page.goto(`https://127.0.0.1:${gw.ports.novnc}/vnc.html`), /ERR_CERT_AUTHORITY_INVALID/);
    await stopWsplice(gw);
});

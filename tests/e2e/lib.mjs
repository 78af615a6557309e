// Shared pieces of the browser tests: the real wsplice binary, ngircd and Xvnc started on
// loopback with free ports, a throwaway PKI trusted by the browser's own certificate store,
// and Debian's Chromium driven by playwright-core. Nothing is mocked.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
export const WSPLICE_BIN = process.env.WSPLICE_BIN || path.join(ROOT, 'build', 'wsplice');
export const PYTHON = process.env.PYTHON || '/usr/bin/python3';
export const CHROMIUM = '/usr/bin/chromium'; // Debian's, never a downloaded build
// Each test writes its screenshots and the logs of what it started here.
export const OUT = process.env.E2E_OUT || path.join(HERE, 'out');

// The flags every browser test runs Chromium with; playwright-core adds --user-data-dir
// (an empty temporary directory per browser).
export const CHROMIUM_FLAGS = [
    '--headless',
    '--no-sandbox', // CI runs as root, where Chromium's sandbox cannot start
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Poll 'check' until it returns something truthy, or fail with 'what' and 'detail()'.
export async function waitFor(what, check, timeout_ms = 15000, detail = () => '') {
    const deadline = Date.now() + timeout_ms;
    for (;;) {
        const value = await check();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${detail()}`);
        await sleep(50);
    }
}

// A port that was free a moment ago, for servers that cannot bind port 0 and report it.
export function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

export function portAccepts(port) {
    return new Promise((resolve) => {
        const sock = net.connect({ host: '127.0.0.1', port });
        sock.once('connect', () => {
            sock.destroy();
            resolve(true);
        });
        sock.once('error', () => resolve(false));
    });
}

const cleanups = new WeakMap();

// Run 'fn' when test 't' ends, before whatever was registered earlier (node:test runs its
// own after hooks first-in, first-out; a browser must close before its profile directory
// goes). Every step runs even when one fails; the first failure is reported.
export function onCleanup(t, fn) {
    let stack = cleanups.get(t);
    if (!stack) {
        stack = [];
        cleanups.set(t, stack);
        t.after(async () => {
            let first = null;
            while (stack.length > 0) {
                try {
                    await stack.pop()();
                } catch (err) {
                    first = first || err;
                }
            }
            if (first) throw first;
        });
    }
    stack.push(fn);
}

// A test's output folder (screenshots, logs), emptied first, and a scratch directory
// removed when the test ends.
export function testDirs(t, name) {
    const out = path.join(OUT, name);
    fs.rmSync(out, { recursive: true, force: true });
    fs.mkdirSync(out, { recursive: true });
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `wsplice-e2e-${name}-`));
    onCleanup(t, () => fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 5 }));
    return { out, tmp };
}

// ---------------------------------------------------------------- processes

// A child process whose stdout and stderr go to a log file in the test's output folder.
// Stopped (and waited for) when the test ends, whatever happened.
export class Service {
    constructor(t, name, argv, { out, env, extraFds = 0 } = {}) {
        this.name = name;
        this.logPath = path.join(out, `${name}.log`);
        const log = fs.openSync(this.logPath, 'w');
        const stdio = ['ignore', log, log, ...Array(extraFds).fill('pipe')];
        this.proc = spawn(argv[0], argv.slice(1), { stdio, env: env || process.env });
        fs.closeSync(log);
        this.exited = new Promise((resolve) => {
            this.proc.once('exit', (code, signal) => resolve({ code, signal }));
            this.proc.once('error', (err) => resolve({ code: -1, signal: null, error: err }));
        });
        this.exitStatus = null;
        this.exited.then((s) => (this.exitStatus = s));
        onCleanup(t, () => this.stop());
    }

    log() {
        try {
            return fs.readFileSync(this.logPath, 'utf8');
        } catch {
            return '';
        }
    }

    // Wait until the log matches 're'; returns the match. Fails early if the process exits.
    async waitLog(re, timeout_ms = 15000) {
        return waitFor(
            `${this.name} to log ${re}`,
            () => {
                const m = this.log().match(re);
                if (m) return m;
                if (this.exitStatus) throw new Error(`${this.name} exited (${JSON.stringify(this.exitStatus)}):\n${this.log()}`);
                return null;
            },
            timeout_ms,
            () => this.log().slice(-4000)
        );
    }

    // Signal the process and wait for it; a second, fatal signal if it does not exit.
    async stop(signal = 'SIGTERM', timeout_ms = 10000) {
        if (!this.exitStatus && this.proc.exitCode === null && this.proc.signalCode === null) {
            this.proc.kill(signal);
            const timer = setTimeout(() => this.proc.kill('SIGKILL'), timeout_ms);
            await this.exited;
            clearTimeout(timer);
        }
        return this.exited;
    }
}

// wsplice on an INI text. Listeners may bind port 0: the bound ports are read back from
// the log into .ports {listener name: port}.
export async function startWsplice(t, ini, { out, tmp, name = 'wsplice' }) {
    const file = path.join(tmp, `${name}.ini`);
    fs.writeFileSync(file, ini);
    fs.copyFileSync(file, path.join(out, `${name}.ini`));
    const gw = new Service(t, name, [WSPLICE_BIN, '-c', file], { out });
    await gw.waitLog(/started:/);
    gw.ports = {};
    for (const m of gw.log().matchAll(/listener name=(\S+) addr=(\S+) listening/g))
        gw.ports[m[1]] = Number(m[2].slice(m[2].lastIndexOf(':') + 1));
    return gw;
}

// The gateway must have stopped cleanly: exit 0 on SIGTERM and no sanitizer report.
export async function stopWsplice(gw) {
    const { code, signal } = await gw.stop();
    const log = gw.log();
    for (const bad of ['ERROR: AddressSanitizer', 'runtime error:', 'LeakSanitizer'])
        if (log.includes(bad)) throw new Error(`wsplice reported "${bad}":\n${log.slice(-4000)}`);
    if (code !== 0) throw new Error(`wsplice exited with ${code ?? signal}:\n${log.slice(-4000)}`);
}

// A config file from conf/ with some of its lines replaced: {regex: replacement}. Each
// regex must match, so a test notices when the shipped file changes under it.
export function fromConf(relPath, replacements) {
    let text = fs.readFileSync(path.join(ROOT, relPath), 'utf8');
    for (const [re, to] of replacements) {
        if (!re.test(text)) throw new Error(`${relPath}: nothing matches ${re}`);
        text = text.replace(re, to);
    }
    return text;
}

// ngircd in the foreground with the demo's config on a free loopback port.
export async function startNgircd(t, { out, tmp }) {
    const port = await freePort();
    const file = path.join(tmp, 'ngircd.conf');
    fs.writeFileSync(file, fromConf('conf/demo/ngircd.conf', [[/^(\s*Ports\s*=).*$/m, `$1 ${port}`]]));
    const irc = new Service(t, 'ngircd', ['ngircd', '--nodaemon', '--config', file], { out });
    await waitFor('ngircd to accept', () => {
        if (irc.exitStatus) throw new Error(`ngircd exited:\n${irc.log()}`);
        return portAccepts(port);
    });
    irc.port = port;
    return irc;
}

// Xvnc on a display it picks itself (-displayfd) and a free RFB port, with no security
// types: only loopback can reach it.
export async function startXvnc(t, { out, width = 640, height = 480 }) {
    const port = await freePort();
    const argv = ['Xvnc', '-displayfd', '3', '-SecurityTypes', 'None', '-UseBlacklist=0', '-localhost',
        '-rfbport', String(port), '-geometry', `${width}x${height}`, '-depth', '24', '-desktop', 'wsplice-e2e'];
    const x = new Service(t, 'xvnc', argv, { out, extraFds: 1 });
    let text = '';
    x.proc.stdio[3].on('data', (d) => (text += d));
    const display = await waitFor('Xvnc to report its display', () => {
        if (x.exitStatus) throw new Error(`Xvnc exited:\n${x.log()}`);
        return /^\d+\n/.test(text) ? `:${text.trim()}` : null;
    });
    await waitFor('Xvnc to accept', () => portAccepts(port));
    x.display = display;
    x.port = port;
    return x;
}

// ---------------------------------------------------------------- TLS

// A test CA and a server certificate for 127.0.0.1 and localhost, made with the openssl
// command by the integration suite's PKI builder; then an NSS database in a fresh HOME
// that trusts the CA, which is where Chromium on Linux looks for user-trusted roots.
export function makeTrustedPki(tmp) {
    const dir = path.join(tmp, 'pki');
    execFileSync(PYTHON, [path.join(ROOT, 'tests', 'integration', 'tlslib.py'), dir], { stdio: 'inherit' });
    const home = path.join(tmp, 'home');
    const nssdb = path.join(home, '.pki', 'nssdb');
    fs.mkdirSync(nssdb, { recursive: true });
    execFileSync('certutil', ['-N', '-d', `sql:${nssdb}`, '--empty-password']);
    execFileSync('certutil', ['-A', '-d', `sql:${nssdb}`, '-n', 'wsplice test CA', '-t', 'C,,', '-i', path.join(dir, 'ca.pem')]);
    return { home, ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'server-ecdsa.pem'), key: path.join(dir, 'server-ecdsa.key') };
}

// ---------------------------------------------------------------- the browser

// Chromium with an empty profile; 'home' replaces HOME (for its NSS certificate store).
// Console errors and page errors are collected in .problems for the test to check.
export async function launchBrowser(t, { tmp, home } = {}) {
    const profile = fs.mkdtempSync(path.join(tmp || os.tmpdir(), 'profile-'));
    const env = { ...process.env };
    if (home) env.HOME = home;
    const context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_FLAGS,
        env,
        viewport: { width: 1000, height: 640 },
    });
    context.problems = [];
    context.on('page', (page) => watchPage(context, page));
    for (const page of context.pages()) watchPage(context, page);
    onCleanup(t, () => context.close());
    return context;
}

function watchPage(context, page) {
    page.on('pageerror', (err) => context.problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
        if (msg.type() === 'error') context.problems.push(`console error: ${msg.text()}`);
    });
}

// Save a screenshot in the test's output folder, whatever state the page is in.
export async function screenshot(page, out, name) {
    try {
        await page.screenshot({ path: path.join(out, `${name}.png`) });
    } catch (err) {
        fs.writeFileSync(path.join(out, `${name}.screenshot-failed.txt`), String(err));
    }
}

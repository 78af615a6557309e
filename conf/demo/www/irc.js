// IRC message syntax for the chat page (RFC 1459 §2.3, RFC 2812 §2.3, IRCv3 tags).
// Pure functions: no DOM, no sockets, so the browser tests can check them too.

// Longest line a server accepts, CRLF included (RFC 2812 §2.3).
export const IRC_LINE_BYTES = 512;

// Split one line (without CRLF) into {tags, prefix, nick, command, params}.
// Returns null for an empty or malformed line.
export function parseLine(line) {
    let rest = line.replace(/[\r\n]+$/, '');
    const msg = { tags: {}, prefix: '', nick: '', command: '', params: [] };
    if (rest.startsWith('@')) {
        const end = rest.indexOf(' ');
        if (end < 0) return null;
        for (const tag of rest.slice(1, end).split(';')) {
            const eq = tag.indexOf('=');
            if (eq < 0) msg.tags[tag] = '';
            else msg.tags[tag.slice(0, eq)] = tag.slice(eq + 1);
        }
        rest = rest.slice(end + 1).replace(/^ +/, '');
    }
    if (rest.startsWith(':')) {
        const end = rest.indexOf(' ');
        if (end < 0) return null;
        msg.prefix = rest.slice(1, end);
        msg.nick = msg.prefix.split('!')[0].split('@')[0];
        rest = rest.slice(end + 1).replace(/^ +/, '');
    }
    while (rest.length > 0) {
        if (rest.startsWith(':')) {
            msg.params.push(rest.slice(1));
            break;
        }
        const end = rest.indexOf(' ');
        const word = end < 0 ? rest : rest.slice(0, end);
        if (!msg.command) msg.command = word.toUpperCase();
        else msg.params.push(word);
        rest = end < 0 ? '' : rest.slice(end + 1).replace(/^ +/, '');
    }
    return msg.command ? msg : null;
}

// Build one line from a command and its parameters; the last one becomes a trailing
// parameter (":...") when it needs to. CR, LF and NUL never get through.
export function formatLine(command, ...params) {
    const clean = params.map((p) => String(p).replace(/[\r\n\0]/g, ' '));
    const last = clean.length - 1;
    if (last >= 0 && (clean[last] === '' || clean[last].includes(' ') || clean[last].startsWith(':')))
        clean[last] = ':' + clean[last];
    return [command, ...clean].join(' ');
}

// RFC 2812 §2.3.1 nickname characters; the server's own length limit still applies.
export function isValidNick(nick) {
    return /^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,15}$/.test(nick);
}

// IRC compares nicknames case-insensitively, with {}|^ the lower case of []\~ (§2.2).
export function foldNick(nick) {
    return nick.toLowerCase().replace(/[[\]\\~]/g, (c) => ({ '[': '{', ']': '}', '\\': '|', '~': '^' })[c]);
}

// Cut text into pieces of at most maxBytes of UTF-8, never inside a character, so a
// long message becomes several PRIVMSGs that each fit the 512-byte line limit.
export function splitUtf8(text, maxBytes) {
    const pieces = [];
    const encoder = new TextEncoder();
    let piece = '';
    let bytes = 0;
    for (const ch of text) {
        const n = encoder.encode(ch).length;
        if (bytes + n > maxBytes && piece) {
            pieces.push(piece);
            piece = '';
            bytes = 0;
        }
        piece += ch;
        bytes += n;
    }
    if (piece) pieces.push(piece);
    return pieces;
}

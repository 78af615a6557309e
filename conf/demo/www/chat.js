// The wsplice chat demo: an IRC client in the page, talking to a real IRC server through
// wsplice. The route uses frame_mode = lines, so every WebSocket text message is one IRC
// line and the gateway adds and strips the CRLFs. The page speaks just enough IRC to chat
// in one channel: registration, PING/PONG, JOIN, PRIVMSG, names, join/part/quit notices.
import { IRC_LINE_BYTES, foldNick, formatLine, isValidNick, parseLine, splitUtf8 } from './irc.js';

const query = new URLSearchParams(location.search);
const CHANNEL = '#' + (query.get('channel') || 'wsplice').replace(/^#/, '');
const WS_PATH = query.get('path') || '/irc';
const MAX_LINES = 1000; // older lines scroll away, as on a stream's chat
const BACKOFF_S = [1, 2, 4, 8, 16, 30]; // reconnect delays, each with +-20% jitter
// A relayed PRIVMSG also carries ":nick!user@host "; 400 bytes of text leaves room for it
// within the 512-byte line.
const TEXT_BYTES = IRC_LINE_BYTES - 112;

const $ = (id) => document.getElementById(id);
const ui = {
    prompt: $('prompt'),
    nickForm: $('nick-form'),
    nickInput: $('nick'),
    nickError: $('nick-error'),
    channel: $('channel'),
    topic: $('topic'),
    status: $('status'),
    retry: $('retry'),
    log: $('log'),
    users: $('users'),
    userCount: $('user-count'),
    sendForm: $('send-form'),
    text: $('text'),
};

const chat = {
    wanted: '', // the nickname typed in the prompt
    nick: '', // the nickname the server knows us by
    ws: null,
    registered: false,
    joined: false,
    attempt: 0, // failed connections since the last successful registration
    timer: 0,
    countdown: 0,
    users: new Map(), // folded nick -> nick as shown
    decoder: null, // for binary frames (a route in binary mode): bytes may split lines
    pending: '',
};

function setState(state, text) {
    document.body.dataset.state = state;
    ui.status.textContent = text;
    ui.retry.hidden = state !== 'waiting';
}

// ---------------------------------------------------------------- the log

function timeNow() {
    return new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
}

function nickColour(nick) {
    let h = 0;
    for (const ch of foldNick(nick)) h = (h * 31 + ch.codePointAt(0)) % 360;
    return `hsl(${h}, 75%, 68%)`;
}

function addLine(kind, nick, text) {
    const stick = ui.log.scrollTop + ui.log.clientHeight >= ui.log.scrollHeight - 8;
    const li = document.createElement('li');
    li.className = kind;
    const time = document.createElement('time');
    time.textContent = timeNow();
    li.append(time);
    if (nick) {
        li.dataset.nick = nick;
        const who = document.createElement('span');
        who.className = 'nick';
        who.textContent = nick;
        who.style.color = nickColour(nick);
        li.append(who);
    }
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text; // never innerHTML: the text comes from other people
    li.append(body);
    ui.log.append(li);
    while (ui.log.childElementCount > MAX_LINES) ui.log.firstElementChild.remove();
    if (stick) ui.log.scrollTop = ui.log.scrollHeight;
}

const notice = (text) => addLine('notice', '', text);

// ---------------------------------------------------------------- the user list

function renderUsers() {
    const names = [...chat.users.values()].sort((a, b) => foldNick(a).localeCompare(foldNick(b)));
    ui.users.replaceChildren(
        ...names.map((n) => {
            const li = document.createElement('li');
            li.textContent = n;
            li.style.color = nickColour(n);
            return li;
        })
    );
    ui.userCount.textContent = String(names.length);
}

function addUser(nick) {
    chat.users.set(foldNick(nick), nick);
    renderUsers();
}

function removeUser(nick) {
    const had = chat.users.delete(foldNick(nick));
    renderUsers();
    return had;
}

// ---------------------------------------------------------------- the connection

function send(command, ...params) {
    if (chat.ws && chat.ws.readyState === WebSocket.OPEN) chat.ws.send(formatLine(command, ...params));
}

function connect() {
    clearTimeout(chat.timer);
    clearInterval(chat.countdown);
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + WS_PATH;
    setState('connecting', 'connecting…');
    let ws;
    try {
        ws = new WebSocket(url);
    } catch (e) {
        retryLater(String(e.message || e));
        return;
    }
    ws.binaryType = 'arraybuffer';
    chat.ws = ws;
    chat.registered = false;
    chat.joined = false;
    chat.decoder = new TextDecoder();
    chat.pending = '';
    let opened = false;
    ws.onopen = () => {
        opened = true;
        setState('registering', 'signing in…');
        chat.nick = chat.wanted;
        send('NICK', chat.nick);
        send('USER', chat.nick.replace(/[^A-Za-z0-9]/g, '') || 'guest', '0', '*', 'wsplice chat demo');
    };
    ws.onmessage = (ev) => receive(ev.data);
    ws.onclose = (ev) => {
        if (chat.ws !== ws) return;
        chat.ws = null;
        const was = chat.joined;
        chat.joined = false;
        chat.registered = false;
        chat.users.clear();
        renderUsers();
        // A handshake refused (502: the IRC server is down) reaches a page only as 1006.
        const why = opened ? (ev.reason ? `${ev.code} ${ev.reason}` : `${ev.code}`) : 'cannot reach the server';
        if (was) notice(`Disconnected (${why}).`);
        retryLater(why);
    };
}

function retryLater(why) {
    const base = BACKOFF_S[Math.min(chat.attempt, BACKOFF_S.length - 1)];
    const delay_ms = Math.round(base * 1000 * (0.8 + 0.4 * Math.random()));
    chat.attempt++;
    const due = Date.now() + delay_ms;
    const show = () => {
        const s = Math.max(0, Math.ceil((due - Date.now()) / 1000));
        setState('waiting', `disconnected (${why}); reconnecting in ${s} s`);
    };
    show();
    clearInterval(chat.countdown);
    chat.countdown = setInterval(show, 1000);
    clearTimeout(chat.timer);
    chat.timer = setTimeout(connect, delay_ms);
}

// Text frames carry one line each (frame_mode = lines); binary frames (a route left in
// binary mode) carry raw bytes that may split or join lines, so those are reassembled.
function receive(data) {
    let text;
    if (typeof data === 'string') {
        text = data + '\n';
    } else {
        text = chat.pending + chat.decoder.decode(data, { stream: true });
    }
    const lines = text.split('\n');
    chat.pending = typeof data === 'string' ? chat.pending : lines.pop();
    for (const line of lines) {
        const msg = parseLine(line);
        if (msg) handle(msg);
    }
}

const isChannel = (target) => foldNick(target) === foldNick(CHANNEL);
const isMe = (nick) => foldNick(nick) === foldNick(chat.nick);

function handle(msg) {
    const p = msg.params;
    const last = p[p.length - 1] || '';
    switch (msg.command) {
    case 'PING':
        send('PONG', ...p);
        break;
    case '001': // RPL_WELCOME
        chat.registered = true;
        chat.attempt = 0;
        chat.nick = p[0] || chat.nick;
        setState('registering', `joining ${CHANNEL}…`);
        send('JOIN', CHANNEL);
        break;
    case '432': // ERR_ERRONEUSNICKNAME
        if (!chat.registered) {
            stop();
            askNick(`The server refused that nickname: ${last}`);
        } else {
            notice(last);
        }
        break;
    case '433': // ERR_NICKNAMEINUSE: try another before registration, report after
        if (!chat.registered) {
            chat.nick =
                chat.nick.length < 15 ? chat.nick + '_' : chat.nick.slice(0, 12) + Math.floor(Math.random() * 1000);
            send('NICK', chat.nick);
        } else {
            notice(`Nickname ${p[1] || ''} is taken.`);
        }
        break;
    case 'JOIN':
        if (!isChannel(p[0] || '')) break;
        if (isMe(msg.nick)) {
            chat.joined = true;
            chat.users.clear();
            addUser(chat.nick);
            setState('joined', `${chat.nick} in ${CHANNEL}`);
            notice(`You joined ${CHANNEL} as ${chat.nick}.`);
        } else {
            addUser(msg.nick);
            addLine('notice join', msg.nick, 'joined');
        }
        break;
    case 'PART':
        if (!isChannel(p[0] || '')) break;
        removeUser(msg.nick);
        addLine('notice part', msg.nick, p.length > 1 ? `left (${last})` : 'left');
        break;
    case 'QUIT':
        if (removeUser(msg.nick)) addLine('notice part', msg.nick, last ? `quit (${last})` : 'quit');
        break;
    case 'KICK':
        if (!isChannel(p[0] || '')) break;
        removeUser(p[1] || '');
        addLine('notice part', p[1] || '', `was kicked by ${msg.nick} (${last})`);
        if (isMe(p[1] || '')) {
            chat.joined = false;
            setState('registering', `kicked from ${CHANNEL}`);
        }
        break;
    case 'NICK':
        if (isMe(msg.nick)) chat.nick = last;
        if (removeUser(msg.nick)) {
            addUser(last);
            addLine('notice', msg.nick, `is now known as ${last}`);
        }
        if (chat.joined) setState('joined', `${chat.nick} in ${CHANNEL}`);
        break;
    case 'PRIVMSG': {
        const action = /^\x01ACTION (.*)\x01?$/.exec(last);
        if (last.startsWith('\x01') && !action) break; // other CTCP requests: ignored
        const text = action ? action[1].replace(/\x01$/, '') : last;
        if (isChannel(p[0] || '')) addLine(action ? 'msg action' : 'msg', msg.nick, text);
        else if (isMe(p[0] || '')) addLine('msg whisper', msg.nick, `(privately) ${text}`);
        break;
    }
    case 'NOTICE':
        if (msg.nick && msg.nick.includes('.')) break; // server notices: not chat
        addLine('notice', msg.nick, last);
        break;
    case '332': // RPL_TOPIC
        if (isChannel(p[1] || '')) ui.topic.textContent = last;
        break;
    case 'TOPIC':
        if (!isChannel(p[0] || '')) break;
        ui.topic.textContent = last;
        addLine('notice', msg.nick, `set the topic: ${last}`);
        break;
    case '353': // RPL_NAMREPLY: "= #chan :@op +voice plain"
        if (!isChannel(p[2] || '')) break;
        for (const entry of last.split(' ').filter(Boolean)) {
            const name = entry.replace(/^[~&@%+]+/, ''); // without channel status marks
            chat.users.set(foldNick(name), name);
        }
        renderUsers();
        break;
    case 'ERROR':
        notice(`Server: ${last}`);
        break;
    default:
        // Errors addressed to us after registration (4xx, 5xx) are worth showing.
        if (chat.registered && /^[45]\d\d$/.test(msg.command)) notice(last);
    }
}

function stop() {
    clearTimeout(chat.timer);
    clearInterval(chat.countdown);
    const ws = chat.ws;
    chat.ws = null;
    chat.joined = false;
    if (ws) {
        if (ws.readyState === WebSocket.OPEN) ws.send(formatLine('QUIT', 'page closed'));
        ws.close(1000, 'bye');
    }
}

// ---------------------------------------------------------------- sending

// One PRIVMSG per line typed or pasted (a line too long for IRC becomes several);
// returns false, keeping the text, when not in the channel.
function sendText(text) {
    const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
    if (lines.length === 0) return true;
    if (!chat.joined) {
        notice('Not connected: the message was not sent.');
        return false;
    }
    for (const line of lines) {
        const action = /^\/me (.+)$/.exec(line);
        const nickCmd = /^\/nick (\S+)$/.exec(line);
        if (nickCmd) {
            if (isValidNick(nickCmd[1])) send('NICK', nickCmd[1]);
            else notice(`Not a valid nickname: ${nickCmd[1]}`);
            continue;
        }
        for (const piece of splitUtf8(action ? action[1] : line, TEXT_BYTES)) {
            send('PRIVMSG', CHANNEL, action ? `\x01ACTION ${piece}\x01` : piece);
            addLine(action ? 'msg action self' : 'msg self', chat.nick, piece);
        }
    }
    return true;
}

ui.sendForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (sendText(ui.text.value)) ui.text.value = '';
    ui.text.focus();
});

// Enter sends, Shift+Enter starts a new line (each line is its own message).
ui.text.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        ui.sendForm.requestSubmit();
    }
});

ui.retry.addEventListener('click', () => connect());

// ---------------------------------------------------------------- the nickname prompt

function askNick(error) {
    setState('nick', 'choose a nickname');
    ui.nickError.textContent = error || '';
    ui.prompt.hidden = false;
    ui.nickInput.focus();
}

ui.nickForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const nick = ui.nickInput.value.trim();
    if (!isValidNick(nick)) {
        ui.nickError.textContent =
            'Up to 16 letters, digits or - _ [ ] { } | ^ ` \\, not starting with a digit or -.';
        return;
    }
    try {
        localStorage.setItem('wsplice-chat-nick', nick);
    } catch (e) {
        // storage may be disabled; the nickname just isn't remembered
    }
    chat.wanted = nick;
    chat.attempt = 0;
    ui.prompt.hidden = true;
    ui.text.focus();
    connect();
});

window.addEventListener('pagehide', stop);

ui.channel.textContent = CHANNEL;
document.title = `${CHANNEL} · wsplice chat`;
let remembered = '';
try {
    remembered = localStorage.getItem('wsplice-chat-nick') || '';
} catch (e) {
    remembered = '';
}
ui.nickInput.value = query.get('nick') || remembered;
askNick('');

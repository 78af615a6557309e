// The chat page's IRC syntax module (conf/demo/www/irc.js), run directly in Node: it is
// pure, so its corner cases are checked here rather than through a browser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { foldNick, formatLine, isValidNick, parseLine, splitUtf8 } from '../../conf/demo/www/irc.js';

test('parseLine: prefix, command, middle and trailing parameters, tags', () => {
    assert.deepEqual(parseLine(':bob!~bob@127.0.0.1 PRIVMSG #wsplice :hi there :)'), {
        tags: {}, prefix: 'bob!~bob@127.0.0.1', nick: 'bob', command: 'PRIVMSG', params: ['#wsplice', 'hi there :)'],
    });
    assert.deepEqual(parseLine('PING :irc.wsplice.test').params, ['irc.wsplice.test']);
    assert.deepEqual(parseLine('ping x\r\n').command, 'PING');
    const m = parseLine('@time=2026-01-01T00:00:00Z;flag :srv 353 me = #c :@op +v plain');
    assert.deepEqual(m.tags, { time: '2026-01-01T00:00:00Z', flag: '' });
    assert.deepEqual(m.params, ['me', '=', '#c', '@op +v plain']);
    assert.equal(parseLine(':irc.wsplice.test 001 alice :Welcome').nick, 'irc.wsplice.test');
    assert.deepEqual(parseLine('JOIN  #a   #b').params, ['#a', '#b']);
    assert.deepEqual(parseLine('PRIVMSG #c :').params, ['#c', '']);
    for (const bad of ['', ':prefixonly', '@tagsonly', '   '])
        assert.equal(parseLine(bad), null, JSON.stringify(bad));
});

test('formatLine: trailing parameter only when needed; CR, LF and NUL never pass', () => {
    assert.equal(formatLine('NICK', 'alice'), 'NICK alice');
    assert.equal(formatLine('PRIVMSG', '#c', 'two words'), 'PRIVMSG #c :two words');
    assert.equal(formatLine('PRIVMSG', '#c', ':)'), 'PRIVMSG #c ::)');
    assert.equal(formatLine('PRIVMSG', '#c', ''), 'PRIVMSG #c :');
    assert.equal(formatLine('PRIVMSG', '#c', 'a\r\nQUIT :x\0'), 'PRIVMSG #c :a  QUIT :x ');
    assert.equal(formatLine('QUIT'), 'QUIT');
});

test('isValidNick and foldNick follow RFC 2812', () => {
    for (const ok of ['alice', 'a', '[x]', '`_^{|}', 'n-1', 'abcdefghijklmnop']) assert.ok(isValidNick(ok), ok);
    for (const bad of ['', '1abc', '-x', 'has space', 'abcdefghijklmnopq', 'ünï', 'a,b', '#chan'])
        assert.ok(!isValidNick(bad), bad);
    assert.equal(foldNick('[Alice]\\~'), '{alice}|^');
});

test('splitUtf8 cuts at character boundaries within the byte budget', () => {
    assert.deepEqual(splitUtf8('abcdef', 4), ['abcd', 'ef']);
    assert.deepEqual(splitUtf8('', 4), []);
    const enc = new TextEncoder();
    const text = 'ü漢👋'.repeat(40);
    for (const budget of [4, 5, 7, 100]) {
        const pieces = splitUtf8(text, budget);
        assert.equal(pieces.join(''), text);
        for (const p of pieces) assert.ok(enc.encode(p).length <= budget, `${budget}: ${p}`);
    }
});

/* ws_frame.h - RFC 6455 frame codec: header parse/encode, unmasking, the fragmentation
 * rules of a message, and close payloads. Pure: no I/O, no allocation. */
#ifndef WSPLICE_WS_FRAME_H
#define WSPLICE_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xa,
};

#define WS_MAX_HEADER_LEN        14  /* 2 + 8 (64-bit length) + 4 (mask) */
#define WS_MAX_SERVER_HEADER_LEN 10  /* server frames are never masked */
#define WS_MAX_CONTROL_PAYLOAD   125 /* §5.5 */

struct ws_frame_header {
    bool fin;
    uint8_t opcode; /* enum ws_opcode */
    bool masked;
    uint8_t mask[4]; /* valid when masked */
    uint64_t payload_len;
    size_t header_len; /* bytes the header took on the wire */
};

enum ws_parse_result {
    WS_PARSE_OK = 0,            /* *hdr filled; hdr->header_len bytes make the header */
    WS_PARSE_NEED_MORE,         /* incomplete; nothing consumed, call again with more */
    WS_PARSE_BAD_OPCODE,        /* reserved opcode or RSV bit set without an extension (§5.2) */
    WS_PARSE_UNMASKED,          /* client frames must be masked (§5.1) */
    WS_PARSE_BAD_CONTROL,       /* fragmented or >125-byte control frame (§5.5) */
    WS_PARSE_BAD_LENGTH,        /* 64-bit length with the most significant bit set (§5.2) */
    WS_PARSE_TOO_BIG,           /* payload above the frame limit, or message above the message limit */
    WS_PARSE_BAD_CONTINUATION,  /* continuation frame with no message started (§5.4) */
    WS_PARSE_NEED_CONTINUATION, /* new text/binary frame inside a fragmented message (§5.4) */
};

/* Parse a client frame header from the first 'len' bytes of 'buf'. Client frames must be
 * masked; payloads above 'max_payload' give WS_PARSE_TOO_BIG. Errors that the first bytes
 * already show are reported even when the header is incomplete. */
enum ws_parse_result ws_frame_parse_header(const uint8_t *buf, size_t len, uint64_t max_payload,
                                           struct ws_frame_header *hdr);

/* Encode an unmasked (server) frame header into 'out' (WS_MAX_SERVER_HEADER_LEN bytes).
 * Returns its length: 2, 4 or 10. The shortest length form is always used (§5.2). */
size_t ws_frame_encode_header(uint8_t *out, bool fin, uint8_t opcode, uint64_t payload_len);

/* XOR 'len' bytes with the masking key in place. 'offset' is the position of buf[0]
 * within the frame's payload, so a payload can be unmasked in any number of pieces (§5.3). */
void ws_frame_unmask(uint8_t *buf, size_t len, const uint8_t mask[4], uint64_t offset);

/* The message a sequence of data frames forms (§5.4). */
struct ws_message {
    uint8_t opcode; /* WS_OP_TEXT or WS_OP_BINARY while a message is open, else 0 */
    uint64_t len;   /* payload bytes of the open message so far, this frame included */
};

/* Account a data frame (text, binary or continuation) to the message it belongs to and
 * enforce the fragmentation rules and 'max_message' (0: no limit). On WS_PARSE_OK,
 * msg->opcode is the message's type; the caller ends the message after a FIN frame with
 * ws_message_end(). On an error 'msg' is unchanged. Control frames must not be passed
 * here. Length encodings longer than needed are accepted (§5.2 binds senders). */
enum ws_parse_result ws_message_add_frame(struct ws_message *msg, const struct ws_frame_header *hdr,
                                          uint64_t max_message);
void ws_message_end(struct ws_message *msg);

const char *ws_parse_result_str(enum ws_parse_result result);

/* The close code RFC 6455 §7.4.1 prescribes for a parse error. */
uint16_t ws_parse_result_close_code(enum ws_parse_result result);

/* Close codes (§7.4.1, IANA registry). */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* never on the wire */
    WS_CLOSE_ABNORMAL = 1006,  /* never on the wire: the connection dropped */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL_ERROR = 1011,
    WS_CLOSE_TRY_AGAIN_LATER = 1013,
    WS_CLOSE_BAD_GATEWAY = 1014,
};

enum ws_close_result {
    WS_CLOSE_OK = 0,     /* *code set (WS_CLOSE_NO_STATUS for an empty payload) */
    WS_CLOSE_BAD_LENGTH, /* a 1-byte payload (§5.5.1) */
    WS_CLOSE_BAD_CODE,   /* a code a peer may not send (§7.4) */
    WS_CLOSE_BAD_REASON, /* the reason is not UTF-8 (§5.5.1) */
};

/* Validate an unmasked close payload. On WS_CLOSE_OK, '*code' is the code and the reason
 * is payload[2..len). */
enum ws_close_result ws_close_parse(const uint8_t *payload, size_t len, uint16_t *code);

/* Whether a peer may send 'code' in a close frame: 1000-1003, 1007-1014, 3000-4999. */
bool ws_close_code_is_valid(unsigned code);

/* Encode a whole server close frame (header and payload) into 'out', which must hold
 * 2 + WS_MAX_CONTROL_PAYLOAD bytes. The reason is cut to fit at a UTF-8 boundary.
 * code WS_CLOSE_NO_STATUS gives an empty payload. Returns the frame length. */
size_t ws_close_encode(uint8_t *out, uint16_t code, const char *reason, size_t reason_len);

const char *ws_close_result_str(enum ws_close_result result);

#endif

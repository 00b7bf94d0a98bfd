import { FIELD_VALUE, HEX, HttpParseError, latin1, type ParseLimits, QDTEXT, TCHAR } from './parser.js';

/**
 * Incremental scanner of a chunked body (RFC 9112 §7.1): finds where it ends and validates its framing,
 * without copying. Reusable via reset().
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-size   = 1*HEXDIG            (here: at most 16 digits, value <= Number.MAX_SAFE_INTEGER)
 *   chunk-ext    = *( ";" name [ "=" ( token / quoted-string ) ] )   (no whitespace around ';' or '=')
 *
 * The size line (size and extensions) is at most MAX_SIZE_LINE bytes; trailer fields follow the header field
 * rules (no obs-fold, CRLF only) and the trailer section counts against maxHeadBytes and maxHeaders. Every
 * error is an HttpParseError with status 400.
 */

/** Longest chunk size line (size and extensions, without CRLF). */
export const MAX_SIZE_LINE = 4096;

const HTAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const DQUOTE = 0x22;
const COLON = 0x3a;
const SEMI = 0x3b;
const EQUALS = 0x3d;
const BACKSLASH = 0x5c;

const S_SIZE_START = 0; // first hex digit of a chunk size
const S_SIZE = 1; // more hex digits, ';' or CR
const S_EXT_NAME_START = 2; // after ';'
const S_EXT_NAME = 3;
const S_EXT_VALUE_START = 4; // after '='
const S_EXT_VALUE = 5; // token value
const S_EXT_QUOTED = 6; // inside a quoted-string value
const S_EXT_QUOTED_ESC = 7; // after '\' in a quoted-string
const S_EXT_QUOTED_END = 8; // after the closing '"'
const S_SIZE_LF = 9; // after the size line's CR
const S_DATA = 10;
const S_DATA_CR = 11; // chunk data ended, CR due
const S_DATA_LF = 12;
const S_TRAILER_START = 13; // start of a trailer line or of the final CRLF
const S_TRAILER_NAME = 14;
const S_TRAILER_OWS = 15; // after ':', before the value
const S_TRAILER_VALUE = 16;
const S_TRAILER_LF = 17; // after a trailer line's CR
const S_FINAL_LF = 18; // after the final CR
const S_DONE = 19;
const S_FAILED = 20; // after an error: the stream cannot be trusted any more

const MAX_SAFE_DIV_16 = Math.floor(Number.MAX_SAFE_INTEGER / 16);

export class ChunkedScanner {
  /** When set, receives each span of chunk payload (to de-chunk for an HTTP/1.0 client). */
  onData: ((buf: Buffer, start: number, end: number) => void) | undefined = undefined;

  private state = S_SIZE_START;
  /** Chunk size being read, then payload bytes still due. */
  private remaining = 0;
  private digits = 0;
  private sizeLineBytes = 0;
  private trailerBytes = 0;
  private trailerList: string[] = [];
  /** Text of the current trailer line gathered from earlier pushes. */
  private partial = '';
  /** Offsets inside the current trailer line: its length so far, the name's end, the value's start and end. */
  private lineLen = 0;
  private nameLen = 0;
  private valueStart = 0;
  private valueEnd = 0;

  private readonly limits: ParseLimits;

  constructor(limits: ParseLimits) {
    this.limits = limits;
  }

  /** True once the last chunk (size 0) and the trailer section (and its final CRLF) have been consumed. */
  get done(): boolean {
    return this.state === S_DONE;
  }

  /** Trailer fields, flat [name, value, ...], once done (empty array when none). */
  get trailers(): string[] {
    return this.trailerList;
  }

  /** Records the failure (later pushes throw again) and returns the error to throw. */
  private fail(code: string, message: string): HttpParseError {
    this.state = S_FAILED;
    return new HttpParseError(400, code, message);
  }

  reset(): void {
    this.state = S_SIZE_START;
    this.remaining = 0;
    this.digits = 0;
    this.sizeLineBytes = 0;
    this.trailerBytes = 0;
    this.trailerList = [];
    this.partial = '';
    this.lineLen = 0;
  }

  /**
   * Consumes bytes from buf[start..end); returns how many belong to the chunked body (all of them unless the
   * body ends inside this range). Throws HttpParseError (400) on bad framing. Any split of the input works.
   */
  push(buf: Buffer, start: number, end: number): number {
    let st = this.state;
    if (st === S_DONE) return 0;
    if (st === S_FAILED) throw new HttpParseError(400, 'chunked-failed', 'The chunked body already failed');
    let i = start;
    // Start of the current trailer line's text within this push (-1: none being gathered).
    let seg = st === S_TRAILER_NAME || st === S_TRAILER_OWS || st === S_TRAILER_VALUE ? start : -1;
    while (i < end) {
      if (st === S_DATA) {
        const n = Math.min(this.remaining, end - i);
        if (this.onData !== undefined) this.onData(buf, i, i + n);
        i += n;
        this.remaining -= n;
        if (this.remaining === 0) st = S_DATA_CR;
        continue;
      }
      const c = buf[i]!;
      if (st <= S_SIZE_LF) {
        if (++this.sizeLineBytes > MAX_SIZE_LINE + 2) throw this.fail('chunk-line-too-long', `Chunk size line longer than ${MAX_SIZE_LINE} bytes`);
        switch (st) {
          case S_SIZE_START:
          case S_SIZE: {
            const h = HEX[c]!;
            if (h !== 255) {
              // At most 16 digits, and remaining * 16 + 15 stays <= MAX_SAFE_INTEGER (= 16 * MAX_SAFE_DIV_16 + 15).
              if (++this.digits > 16 || this.remaining > MAX_SAFE_DIV_16) throw this.fail('chunk-size-too-large', 'Chunk size too large');
              this.remaining = this.remaining * 16 + h;
              st = S_SIZE;
            } else if (st === S_SIZE && c === SEMI) st = S_EXT_NAME_START;
            else if (st === S_SIZE && c === CR) st = S_SIZE_LF;
            else throw this.fail(c === LF ? 'bare-lf' : 'bad-chunk-size', 'Invalid chunk size');
            break;
          }
          case S_EXT_NAME_START:
            if (TCHAR[c] !== 1) throw this.fail(c === LF ? 'bare-lf' : 'bad-chunk-ext', 'Invalid chunk extension');
            st = S_EXT_NAME;
            break;
          case S_EXT_NAME:
          case S_EXT_VALUE:
            if (TCHAR[c] === 1) break;
            if (c === SEMI) st = S_EXT_NAME_START;
            else if (c === CR) st = S_SIZE_LF;
            else if (c === EQUALS && st === S_EXT_NAME) st = S_EXT_VALUE_START;
            else throw this.fail(c === LF ? 'bare-lf' : 'bad-chunk-ext', 'Invalid chunk extension');
            break;
          case S_EXT_VALUE_START:
            if (TCHAR[c] === 1) st = S_EXT_VALUE;
            else if (c === DQUOTE) st = S_EXT_QUOTED;
            else throw this.fail(c === LF ? 'bare-lf' : 'bad-chunk-ext', 'Invalid chunk extension value');
            break;
          case S_EXT_QUOTED:
            if (c === DQUOTE) st = S_EXT_QUOTED_END;
            else if (c === BACKSLASH) st = S_EXT_QUOTED_ESC;
            else if (QDTEXT[c] !== 1) throw this.fail(c === LF ? 'bare-lf' : 'bad-chunk-ext', 'Invalid character in a chunk extension quoted-string');
            break;
          case S_EXT_QUOTED_ESC:
            if (FIELD_VALUE[c] !== 1) throw this.fail(c === LF ? 'bare-lf' : 'bad-chunk-ext', 'Invalid quoted-pair in a chunk extension');
            st = S_EXT_QUOTED;
            break;
          case S_EXT_QUOTED_END:
            if (c === SEMI) st = S_EXT_NAME_START;
            else if (c === CR) st = S_SIZE_LF;
            else throw this.fail(c === LF ? 'bare-lf' : 'bad-chunk-ext', 'Invalid chunk extension');
            break;
          case S_SIZE_LF:
            if (c !== LF) throw this.fail('bare-cr', 'Chunk size line not ended by CRLF');
            this.sizeLineBytes = 0;
            this.digits = 0;
            st = this.remaining === 0 ? S_TRAILER_START : S_DATA;
            break;
        }
        i++;
        continue;
      }
      switch (st) {
        case S_DATA_CR:
          if (c !== CR) throw this.fail('bad-chunk-data', 'Chunk data not followed by CRLF');
          st = S_DATA_LF;
          break;
        case S_DATA_LF:
          if (c !== LF) throw this.fail('bad-chunk-data', 'Chunk data not followed by CRLF');
          st = S_SIZE_START;
          break;
        default: {
          // The trailer section.
          if (++this.trailerBytes > this.limits.maxHeadBytes) throw this.fail('trailers-too-large', `Trailer section larger than ${this.limits.maxHeadBytes} bytes`);
          switch (st) {
            case S_TRAILER_START:
              if (c === CR) st = S_FINAL_LF;
              else if (TCHAR[c] === 1) {
                if (this.trailerList.length >= this.limits.maxHeaders * 2) throw this.fail('too-many-trailers', `More than ${this.limits.maxHeaders} trailer fields`);
                st = S_TRAILER_NAME;
                seg = i;
                this.partial = '';
                this.lineLen = 1;
              } else if (c === SP || c === HTAB) throw this.fail('obs-fold', 'Obsolete line folding in the trailer section');
              else if (c === LF) throw this.fail('bare-lf', 'Bare LF in the trailer section');
              else throw this.fail('bad-trailer-name', 'Invalid trailer field name');
              break;
            case S_TRAILER_NAME:
              this.lineLen++;
              if (TCHAR[c] === 1) break;
              if (c !== COLON) {
                if (c === SP || c === HTAB) throw this.fail('space-before-colon', 'Whitespace between a trailer field name and its colon');
                throw this.fail(c === LF ? 'bare-lf' : 'bad-trailer-name', 'Invalid trailer field name');
              }
              this.nameLen = this.lineLen - 1;
              this.valueStart = this.valueEnd = this.lineLen;
              st = S_TRAILER_OWS;
              break;
            case S_TRAILER_OWS:
            case S_TRAILER_VALUE:
              if (FIELD_VALUE[c] === 1) {
                this.lineLen++;
                if (c !== SP && c !== HTAB) {
                  if (st === S_TRAILER_OWS) {
                    this.valueStart = this.lineLen - 1;
                    st = S_TRAILER_VALUE;
                  }
                  this.valueEnd = this.lineLen;
                } else if (st === S_TRAILER_OWS) this.valueStart = this.valueEnd = this.lineLen;
              } else if (c === CR) {
                this.partial += latin1(buf, seg, i);
                seg = -1;
                st = S_TRAILER_LF;
              } else throw this.fail(c === LF ? 'bare-lf' : 'bad-trailer-value', 'Invalid character in a trailer field value');
              break;
            case S_TRAILER_LF: {
              if (c !== LF) throw this.fail('bare-cr', 'Trailer line not ended by CRLF');
              const line = this.partial;
              this.partial = '';
              this.trailerList.push(line.slice(0, this.nameLen), line.slice(this.valueStart, this.valueEnd));
              st = S_TRAILER_START;
              break;
            }
            case S_FINAL_LF:
              if (c !== LF) throw this.fail('bare-cr', 'Trailer section not ended by CRLF');
              this.state = S_DONE;
              return i + 1 - start;
          }
        }
      }
      i++;
    }
    if (seg !== -1) this.partial += latin1(buf, seg, end);
    this.state = st;
    return end - start;
  }
}

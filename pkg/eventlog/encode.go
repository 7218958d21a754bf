package eventlog

import (
	"encoding/binary"
	"math/rand/v2"
	"time"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// clock appends timestamps in RFC 3339, UTC, with a fixed six-digit fraction
// (2006-01-02T15:04:05.000000Z), so every timestamp has fractional seconds
// and they sort as text. It reuses the formatted second while it lasts.
type clock struct {
	sec    int64
	prefix []byte // 2006-01-02T15:04:05
}

func (c *clock) appendNow(b []byte) []byte { return c.append(b, time.Now()) }

func (c *clock) append(b []byte, t time.Time) []byte {
	t = t.UTC()
	if sec := t.Unix(); sec != c.sec || c.prefix == nil {
		c.sec = sec
		c.prefix = t.AppendFormat(c.prefix[:0], "2006-01-02T15:04:05")
	}
	b = append(b, c.prefix...)
	b = append(b, ".000000Z"...)
	frac := b[len(b)-7 : len(b)-1]
	for us, i := t.Nanosecond()/1000, 5; i >= 0; i-- {
		frac[i] = byte('0' + us%10)
		us /= 10
	}
	return b
}

// appendUUID appends u as a random (version 4) UUID: its version and variant
// bits are set, the other 122 bits are u's.
func appendUUID(b []byte, u [16]byte) []byte {
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&0x0f])
	}
	return b
}

// randomID returns 16 bytes from rnd, a ChaCha8 seeded from crypto/rand: as
// unpredictable as crypto/rand, without a system call per event.
func randomID(rnd *rand.ChaCha8) (u [16]byte) {
	binary.LittleEndian.PutUint64(u[:8], rnd.Uint64())
	binary.LittleEndian.PutUint64(u[8:], rnd.Uint64())
	return u
}

// appendString appends s as a quoted JSON string.
func appendString(b, s []byte) []byte {
	b = append(b, '"')
	b = appendStringBody(b, s)
	return append(b, '"')
}

// appendStringBody appends s escaped for use inside a JSON string, as
// encoding/json would without HTML escaping: control characters are escaped,
// invalid UTF-8 becomes U+FFFD, and U+2028 and U+2029 are escaped.
func appendStringBody(b, s []byte) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0x0f])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0x0f])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// cutUTF8 returns the length of the longest prefix of b that does not end in
// the middle of a UTF-8 encoded rune.
func cutUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if utf8.FullRune(b[i:]) {
				return len(b)
			}
			return i
		}
	}
	return len(b)
}

/*
 * A small printf: %d %i %u %x %X %o %p %s %c %%, flags "-0#+ ", width and
 * precision (numbers or *), length modifiers hh h l ll z t j.
 */
#include "sdk.h"

struct sink {
    char *buf;
    size_t size;     /* capacity including the terminating NUL */
    size_t len;      /* characters produced (may exceed size) */
    bool to_console; /* flush to the console when the buffer fills */
};

static void sink_flush(struct sink *s)
{
    if (s->to_console && s->len) {
        console_write(s->buf, s->len);
        s->len = 0;
    }
}

static void sink_put(struct sink *s, char c)
{
    if (s->to_console) {
        if (s->len == s->size)
            sink_flush(s);
        s->buf[s->len++] = c;
        return;
    }
    if (s->len + 1 < s->size)
        s->buf[s->len] = c;
    s->len++;
}

static void sink_pad(struct sink *s, char c, int n)
{
    while (n-- > 0)
        sink_put(s, c);
}

enum { F_LEFT = 1, F_ZERO = 2, F_ALT = 4, F_PLUS = 8, F_SPACE = 16 };

static void put_number(struct sink *s, unsigned long long v, bool negative,
                       unsigned int base, bool upper, int flags, int width,
                       int prec)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;

    while (v) {
        uint32_t r;
        v = udivmod64(v, base, &r);
        tmp[n++] = digits[r];
    }
    if (prec < 0 && n == 0)
        tmp[n++] = '0';
    /* An explicit precision sets the minimum digit count (zero flag ignored). */
    int zeros = prec > n ? prec - n : 0;
    if (prec >= 0)
        flags &= ~F_ZERO;

    char sign = 0;
    if (negative)
        sign = '-';
    else if (flags & F_PLUS)
        sign = '+';
    else if (flags & F_SPACE)
        sign = ' ';

    const char *prefix = "";
    if ((flags & F_ALT) && base == 16 && (n > 1 || tmp[0] != '0'))
        prefix = upper ? "0X" : "0x";
    else if ((flags & F_ALT) && base == 8 && zeros == 0 && tmp[n - 1] != '0')
        prefix = "0";

    int len = n + zeros + (sign ? 1 : 0) + (int)strlen(prefix);
    int pad = width > len ? width - len : 0;

    if (!(flags & (F_LEFT | F_ZERO)))
        sink_pad(s, ' ', pad);
    if (sign)
        sink_put(s, sign);
    for (const char *p = prefix; *p; p++)
        sink_put(s, *p);
    if (flags & F_ZERO)
        sink_pad(s, '0', pad);
    sink_pad(s, '0', zeros);
    while (n)
        sink_put(s, tmp[--n]);
    if (flags & F_LEFT)
        sink_pad(s, ' ', pad);
}

static void format(struct sink *s, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            sink_put(s, *fmt);
            continue;
        }
        fmt++;

        int flags = 0;
        for (;; fmt++) {
            if (*fmt == '-') flags |= F_LEFT;
            else if (*fmt == '0') flags |= F_ZERO;
            else if (*fmt == '#') flags |= F_ALT;
            else if (*fmt == '+') flags |= F_PLUS;
            else if (*fmt == ' ') flags |= F_SPACE;
            else break;
        }

        int width = 0;
        if (*fmt == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                flags |= F_LEFT;
                width = -width;
            }
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }

        int prec = -1;
        if (*fmt == '.') {
            fmt++;
            prec = 0;
            if (*fmt == '*') {
                prec = va_arg(ap, int);
                fmt++;
            } else {
                while (*fmt >= '0' && *fmt <= '9')
                    prec = prec * 10 + (*fmt++ - '0');
            }
        }

        /* Length modifiers decide how wide the integer argument is. */
        int longs = 0;
        bool is_char = false, is_short = false, is_size = false;
        for (;; fmt++) {
            if (*fmt == 'l')
                longs++;
            else if (*fmt == 'h') {
                if (is_short)
                    is_char = true;
                is_short = true;
            } else if (*fmt == 'z' || *fmt == 't')
                is_size = true;
            else if (*fmt == 'j')
                longs = 2;
            else
                break;
        }
        size_t size = longs >= 2 ? sizeof(long long)
                    : longs == 1 ? sizeof(long)
                    : is_size ? sizeof(size_t) : sizeof(int);

        unsigned long long uv;
        long long sv;
        switch (*fmt) {
        case 'd':
        case 'i':
            if (size == sizeof(long long))
                sv = va_arg(ap, long long);
            else if (size == sizeof(long))
                sv = va_arg(ap, long);
            else
                sv = va_arg(ap, int);
            if (is_char)
                sv = (signed char)sv;
            else if (is_short)
                sv = (short)sv;
            put_number(s, sv < 0 ? 0ULL - (unsigned long long)sv : (unsigned long long)sv,
                       sv < 0, 10, false, flags, width, prec);
            break;
        case 'u':
        case 'x':
        case 'X':
        case 'o':
            if (size == sizeof(long long))
                uv = va_arg(ap, unsigned long long);
            else if (size == sizeof(long))
                uv = va_arg(ap, unsigned long);
            else
                uv = va_arg(ap, unsigned int);
            if (is_char)
                uv = (unsigned char)uv;
            else if (is_short)
                uv = (unsigned short)uv;
            put_number(s, uv, false, *fmt == 'u' ? 10 : *fmt == 'o' ? 8 : 16,
                       *fmt == 'X', flags, width, prec);
            break;
        case 'p':
            uv = (unsigned long)va_arg(ap, void *);
            put_number(s, uv, false, 16, false, flags | F_ALT, width, prec);
            break;
        case 'c': {
            char c = (char)va_arg(ap, int);
            if (!(flags & F_LEFT))
                sink_pad(s, ' ', width - 1);
            sink_put(s, c);
            if (flags & F_LEFT)
                sink_pad(s, ' ', width - 1);
            break;
        }
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (!str)
                str = "(null)";
            int n = (int)strnlen(str, prec >= 0 ? (size_t)prec : (size_t)-1);
            if (!(flags & F_LEFT))
                sink_pad(s, ' ', width - n);
            for (int i = 0; i < n; i++)
                sink_put(s, str[i]);
            if (flags & F_LEFT)
                sink_pad(s, ' ', width - n);
            break;
        }
        case '%':
            sink_put(s, '%');
            break;
        case '\0':
            return;
        default:
            /* Unknown conversion: print it literally so mistakes are visible. */
            sink_put(s, '%');
            sink_put(s, *fmt);
            break;
        }
    }
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct sink s = { .buf = buf, .size = size, .len = 0, .to_console = false };
    format(&s, fmt, ap);
    if (size)
        buf[s.len < size ? s.len : size - 1] = '\0';
    return (int)s.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int vprintf(const char *fmt, va_list ap)
{
    char buf[256];
    struct sink s = { .buf = buf, .size = sizeof(buf), .len = 0, .to_console = true };
    format(&s, fmt, ap);
    sink_flush(&s);
    return 0;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int puts(const char *s)
{
    console_write(s, strlen(s));
    console_write("\n", 1);
    return 0;
}

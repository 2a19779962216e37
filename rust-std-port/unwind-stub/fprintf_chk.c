/* LLVM 14's libunwind.a (Debian libunwind-14-dev) was compiled against glibc with
 * _FORTIFY_SOURCE, so its error paths call __fprintf_chk, which musl does not have.
 * Forward it to vfprintf (the "check" level is ignored).  Compiled with musl-gcc and
 * added to a copy of libunwind.a by scripts/build-musl.sh. */
#include <stdarg.h>
#include <stdio.h>

int __fprintf_chk(FILE *stream, int flag, const char *fmt, ...)
{
    va_list ap;
    int n;
    (void)flag;
    va_start(ap, fmt);
    n = vfprintf(stream, fmt, ap);
    va_end(ap);
    return n;
}

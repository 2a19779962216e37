/* glibc-only symbols referenced by Debian's static DPDK archives, for the static musl build
 * (components/dpdk-sys/build.rs, link_static_for_musl). Debian compiles DPDK with
 * _FORTIFY_SOURCE, so its objects call glibc's checked variants (`__snprintf_chk` ...); each
 * is forwarded here to the plain function musl provides. The buffer-size checks are dropped:
 * the callers were checked by the compiler where the sizes were known, and musl's own
 * functions are what every other object in the binary calls.
 *
 * Every definition is weak, so a strong one elsewhere (the POSIX shim defines fcntl64) wins.
 * Compiled with musl-gcc: the prototypes below are musl's. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#define WEAK __attribute__((weak))

WEAK int __snprintf_chk(char *s, size_t n, int flag, size_t slen, const char *fmt, ...) {
  (void)flag; (void)slen;
  va_list ap;
  va_start(ap, fmt);
  int r = vsnprintf(s, n, fmt, ap);
  va_end(ap);
  return r;
}

WEAK int __vsnprintf_chk(char *s, size_t n, int flag, size_t slen, const char *fmt, va_list ap) {
  (void)flag; (void)slen;
  return vsnprintf(s, n, fmt, ap);
}

WEAK int __sprintf_chk(char *s, int flag, size_t slen, const char *fmt, ...) {
  (void)flag;
  va_list ap;
  va_start(ap, fmt);
  /* slen is the destination's size as the compiler knew it ((size_t)-1: unknown). */
  int r = slen == (size_t)-1 ? vsprintf(s, fmt, ap) : vsnprintf(s, slen, fmt, ap);
  va_end(ap);
  return r;
}

WEAK int __fprintf_chk(FILE *f, int flag, const char *fmt, ...) {
  (void)flag;
  va_list ap;
  va_start(ap, fmt);
  int r = vfprintf(f, fmt, ap);
  va_end(ap);
  return r;
}

WEAK int __vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap) {
  (void)flag;
  return vfprintf(f, fmt, ap);
}

WEAK int __printf_chk(int flag, const char *fmt, ...) {
  (void)flag;
  va_list ap;
  va_start(ap, fmt);
  int r = vprintf(fmt, ap);
  va_end(ap);
  return r;
}

WEAK int __asprintf_chk(char **s, int flag, const char *fmt, ...) {
  (void)flag;
  va_list ap;
  va_start(ap, fmt);
  int r = vasprintf(s, fmt, ap);
  va_end(ap);
  return r;
}

WEAK int __vasprintf_chk(char **s, int flag, const char *fmt, va_list ap) {
  (void)flag;
  return vasprintf(s, fmt, ap);
}

WEAK void *__memcpy_chk(void *dst, const void *src, size_t n, size_t dstlen) {
  (void)dstlen;
  return memcpy(dst, src, n);
}

WEAK char *__strcpy_chk(char *dst, const char *src, size_t dstlen) {
  (void)dstlen;
  return strcpy(dst, src);
}

WEAK char *__strcat_chk(char *dst, const char *src, size_t dstlen) {
  (void)dstlen;
  return strcat(dst, src);
}

WEAK ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen) {
  (void)buflen;
  return read(fd, buf, n);
}

WEAK void __syslog_chk(int pri, int flag, const char *fmt, ...) {
  (void)flag;
  va_list ap;
  va_start(ap, fmt);
  vsyslog(pri, fmt, ap);
  va_end(ap);
}

WEAK _Noreturn void __longjmp_chk(jmp_buf env, int val) { longjmp(env, val); }

/* rte_dump_stack's backtrace: musl has no unwinder in libc; report an empty stack. */
WEAK int backtrace(void **buf, int n) {
  (void)buf; (void)n;
  return 0;
}

/* glibc's large-file fcntl; on x86_64 it is fcntl. */
WEAK int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  long arg = va_arg(ap, long);
  va_end(ap);
  return fcntl(fd, cmd, arg);
}

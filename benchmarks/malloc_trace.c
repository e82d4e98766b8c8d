/* An LD_PRELOAD shim that logs the heap calls of a process while it is switched on.

   Build (benchmarks/trace_session.py does it into a temporary folder; never commit the .so):
       gcc -O2 -shared -fPIC -o malloc_trace.so benchmarks/malloc_trace.c -ldl
   The process switches logging on and off with trace_on(path) / trace_off() (ctypes). Each call
   is one line: op, size (or alignment and size), result or argument pointer, and for an
   allocation whether glibc served it from a mapping (the IS_MMAPPED bit of the chunk header).
   Allocation goes through glibc's own entry points (__libc_malloc, ...), so the shim never
   recurses into itself; the log is written with write(2) from a static buffer, not stdio. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static int trace_fd = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char buffer[1 << 16];
static size_t used;
static __thread int busy;

static void flush_locked(void) {
    size_t off = 0;
    while (off < used) {
        ssize_t n = write(trace_fd, buffer + off, used - off);
        if (n <= 0) break;
        off += (size_t)n;
    }
    used = 0;
}

static void logf_(const char *fmt, ...) {
    if (trace_fd < 0 || busy) return;
    busy = 1;
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&lock);
    if (trace_fd >= 0 && n > 0) {
        if (used + (size_t)n > sizeof buffer) flush_locked();
        memcpy(buffer + used, line, (size_t)n);
        used += (size_t)n;
    }
    pthread_mutex_unlock(&lock);
    busy = 0;
}

static int mapped(void *p) { return p && (((size_t *)p)[-1] & 2) ? 1 : 0; }

void trace_on(const char *path) {
    pthread_mutex_lock(&lock);
    trace_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    used = 0;
    pthread_mutex_unlock(&lock);
}

void trace_mark(const char *label) { logf_("mark %s\n", label); }

void trace_off(void) {
    pthread_mutex_lock(&lock);
    if (trace_fd >= 0) {
        flush_locked();
        close(trace_fd);
    }
    trace_fd = -1;
    pthread_mutex_unlock(&lock);
}

void *malloc(size_t size) {
    void *p = __libc_malloc(size);
    logf_("m %zu %p %d\n", size, p, mapped(p));
    return p;
}

void free(void *p) {
    if (p) logf_("f %p %d\n", p, mapped(p));
    __libc_free(p);
}

void *calloc(size_t n, size_t size) {
    void *p = __libc_calloc(n, size);
    logf_("m %zu %p %d\n", n * size, p, mapped(p));
    return p;
}

void *realloc(void *old, size_t size) {
    int was = mapped(old);
    void *p = __libc_realloc(old, size);
    logf_("r %p %d %zu %p %d\n", old, was, size, p, mapped(p));
    return p;
}

void *memalign(size_t align, size_t size) {
    void *p = __libc_memalign(align, size);
    logf_("m %zu %p %d\n", size, p, mapped(p));
    return p;
}

void *aligned_alloc(size_t align, size_t size) { return memalign(align, size); }

int posix_memalign(void **out, size_t align, size_t size) {
    void *p = __libc_memalign(align, size);
    if (!p) return 12; /* ENOMEM */
    logf_("m %zu %p %d\n", size, p, mapped(p));
    *out = p;
    return 0;
}

/* mmap/munmap outside malloc (file mappings, the arena's own mappings if any). */
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    static void *(*real)(void *, size_t, int, int, int, off_t);
    if (!real) real = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
    void *p = real(addr, len, prot, flags, fd, off);
    logf_("mmap %zu %p %d\n", len, p, fd);
    return p;
}

int munmap(void *addr, size_t len) {
    static int (*real)(void *, size_t);
    if (!real) real = (int (*)(void *, size_t))dlsym(RTLD_NEXT, "munmap");
    logf_("munmap %zu %p\n", len, addr);
    return real(addr, len);
}

/* cgstorm-helper: the part of a cgstorm shell reproducer that sh cannot do.
 *
 *   cgstorm-helper serve DIR LANE...
 *       Serve the lanes' requests: lane L writes one request per line to the
 *       FIFO DIR/h.L.in and reads one reply per line from DIR/h.L.out. Open
 *       files, mappings and page references are shared by all lanes (one
 *       thread per lane, so a lane blocked in the kernel does not block the
 *       others). Requests:
 *         open NAME PATH CREATE DIRECT    open(O_RDWR [|O_CREAT] [|O_DIRECT])
 *         close NAME
 *         mmap NAME FD LEN SYNC           MAP_SHARED, or MAP_SHARED_VALIDATE|MAP_SYNC
 *         touch NAME WRITE                madvise(MADV_POPULATE_READ/WRITE)
 *         munmap NAME
 *         pin NAME MAP VIA [PEER]         VIA: vmsplice dio_read dio_write aio_read
 *                                         aio_write uring_read uring_write
 *         release NAME                    read the pipe out / reap the I/O
 *   cgstorm-helper task writer PATH BYTES BS MODE FSYNC LOOP    (MODE: buffered direct dsync)
 *   cgstorm-helper task reader PATH BS DIRECT LOOP
 *   cgstorm-helper task hog BYTES [PATH]
 *       A task: open what it needs, say "ok" or "err ERRNO" on stdout, then
 *       work until done (exit status: 0, or the errno) or killed.
 *   cgstorm-helper write PATH BYTES BS MODE FSYNC
 *       A dd-like write (O_CREAT|O_TRUNC, BYTES in BS blocks, the last one short).
 *
 * Every reply is "ok" or "err ERRNO". An unknown name is EBADF for a
 * descriptor, EINVAL for a mapping or pin; a name in use is EEXIST.
 * Build: cc -O2 -pthread -o cgstorm-helper helper.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define MAX_BS (64ULL << 20)
#define SLOTS 512

enum kind { K_FD = 1, K_MAP, K_PIN };
enum pin_kind { P_PIPE = 1, P_AIO, P_URING };

struct ring {
	int fd;
	void *sq, *cq;
	size_t sq_size, cq_size, sqes_size;
	struct io_uring_sqe *sqes;
	struct io_uring_params p;
};

struct slot {
	int kind;
	char name[64];
	int fd;			/* K_FD */
	char *addr;		/* K_MAP */
	size_t len;
	int pin;		/* K_PIN */
	int pipe_rd, pipe_wr, peer;
	aio_context_t ctx;
	struct ring *ring;
};

static struct slot slots[SLOTS];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static const char *dir;

static struct slot *find(int kind, const char *name)
{
	for (int i = 0; i < SLOTS; i++)
		if (slots[i].kind == kind && strcmp(slots[i].name, name) == 0)
			return &slots[i];
	return NULL;
}

/* Takes a free slot for NAME, or fails with EEXIST (or ENOMEM when full). */
static int claim(int kind, const char *name, struct slot **out)
{
	if (find(kind, name))
		return EEXIST;
	for (int i = 0; i < SLOTS; i++)
		if (!slots[i].kind) {
			memset(&slots[i], 0, sizeof slots[i]);
			slots[i].kind = -kind; /* reserved until filled */
			snprintf(slots[i].name, sizeof slots[i].name, "%s", name);
			*out = &slots[i];
			return 0;
		}
	return ENOMEM;
}

static int err(void)
{
	return errno ? errno : EIO;
}

static int do_open(char **a)
{
	struct slot *s;
	int e;
	pthread_mutex_lock(&mu);
	e = claim(K_FD, a[0], &s);
	pthread_mutex_unlock(&mu);
	if (e)
		return e;
	int flags = O_RDWR | O_CLOEXEC | (atoi(a[2]) ? O_CREAT : 0) | (atoi(a[3]) ? O_DIRECT : 0);
	int fd = open(a[1], flags, 0644);
	e = fd < 0 ? err() : 0;
	pthread_mutex_lock(&mu);
	if (e)
		s->kind = 0;
	else {
		s->fd = fd;
		s->kind = K_FD;
	}
	pthread_mutex_unlock(&mu);
	return e;
}

static int do_close(char **a)
{
	pthread_mutex_lock(&mu);
	struct slot *s = find(K_FD, a[0]);
	int fd = s ? s->fd : -1;
	if (s)
		s->kind = 0;
	pthread_mutex_unlock(&mu);
	if (!s)
		return EBADF;
	close(fd);
	return 0;
}

static int do_mmap(char **a)
{
	struct slot *s;
	int e, fd = -1;
	pthread_mutex_lock(&mu);
	struct slot *f = find(K_FD, a[1]);
	e = claim(K_MAP, a[0], &s);
	if (!e && !f) {
		s->kind = 0;
		e = EBADF;
	}
	if (!e)
		fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 0); /* survives a concurrent close */
	pthread_mutex_unlock(&mu);
	if (e)
		return e;
	size_t len = strtoull(a[2], NULL, 10);
	int flags = atoi(a[3]) ? MAP_SHARED_VALIDATE | MAP_SYNC : MAP_SHARED;
	void *p = fd < 0 ? MAP_FAILED : mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);
	e = p == MAP_FAILED ? err() : 0;
	if (fd >= 0)
		close(fd);
	pthread_mutex_lock(&mu);
	if (e)
		s->kind = 0;
	else {
		s->addr = p;
		s->len = len;
		s->kind = K_MAP;
	}
	pthread_mutex_unlock(&mu);
	return e;
}

static int do_touch(char **a)
{
	pthread_mutex_lock(&mu);
	struct slot *s = find(K_MAP, a[0]);
	char *addr = s ? s->addr : NULL;
	size_t len = s ? s->len : 0;
	pthread_mutex_unlock(&mu);
	if (!s)
		return EINVAL;
	int advice = atoi(a[1]) ? MADV_POPULATE_WRITE : MADV_POPULATE_READ;
	return madvise(addr, len, advice) ? err() : 0;
}

static int do_munmap(char **a)
{
	pthread_mutex_lock(&mu);
	struct slot *s = find(K_MAP, a[0]);
	char *addr = s ? s->addr : NULL;
	size_t len = s ? s->len : 0;
	if (s)
		s->kind = 0;
	pthread_mutex_unlock(&mu);
	if (!s)
		return EINVAL;
	return munmap(addr, len) ? err() : 0;
}

static int pin_vmsplice(struct slot *s, char *addr, size_t len)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK))
		return err();
	/* As much of the mapping as the pipe can hold (up to pipe-max-size). */
	fcntl(p[1], F_SETPIPE_SZ, (int)(len < (1 << 20) ? len : (1 << 20)));
	struct iovec iov = { .iov_base = addr, .iov_len = len };
	if (vmsplice(p[1], &iov, 1, SPLICE_F_NONBLOCK) < 0) {
		int e = err();
		close(p[0]);
		close(p[1]);
		return e;
	}
	s->pin = P_PIPE;
	s->pipe_rd = p[0];
	s->pipe_wr = p[1];
	return 0;
}

static int pin_aio(struct slot *s, int peer, char *addr, size_t len, int rd)
{
	aio_context_t ctx = 0;
	if (syscall(SYS_io_setup, 1, &ctx) < 0)
		return err();
	struct iocb cb;
	memset(&cb, 0, sizeof cb);
	cb.aio_lio_opcode = rd ? IOCB_CMD_PREAD : IOCB_CMD_PWRITE;
	cb.aio_fildes = peer;
	cb.aio_buf = (unsigned long)addr;
	cb.aio_nbytes = len;
	struct iocb *cbs[1] = { &cb };
	if (syscall(SYS_io_submit, ctx, 1, cbs) < 0) {
		int e = err();
		syscall(SYS_io_destroy, ctx);
		return e;
	}
	s->pin = P_AIO;
	s->ctx = ctx;
	s->peer = peer;
	return 0;
}

static void ring_free(struct ring *r)
{
	if (r->sqes && r->sqes != MAP_FAILED)
		munmap(r->sqes, r->sqes_size);
	if (r->cq && r->cq != MAP_FAILED && r->cq != r->sq)
		munmap(r->cq, r->cq_size);
	if (r->sq && r->sq != MAP_FAILED)
		munmap(r->sq, r->sq_size);
	close(r->fd);
	free(r);
}

#define RING_U32(base, off) ((unsigned *)((char *)(base) + (off)))

static int pin_uring(struct slot *s, int peer, char *addr, size_t len, int rd)
{
	struct ring *r = calloc(1, sizeof *r);
	if (!r)
		return ENOMEM;
	r->fd = syscall(__NR_io_uring_setup, 4, &r->p);
	if (r->fd < 0) {
		int e = err();
		free(r);
		return e;
	}
	struct io_uring_params *p = &r->p;
	r->sq_size = p->sq_off.array + p->sq_entries * sizeof(unsigned);
	r->cq_size = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
	if (p->features & IORING_FEAT_SINGLE_MMAP) {
		if (r->cq_size > r->sq_size)
			r->sq_size = r->cq_size;
		r->cq_size = r->sq_size;
	}
	int prot = PROT_READ | PROT_WRITE, fl = MAP_SHARED | MAP_POPULATE;
	r->sq = mmap(NULL, r->sq_size, prot, fl, r->fd, IORING_OFF_SQ_RING);
	r->cq = (p->features & IORING_FEAT_SINGLE_MMAP) ? r->sq
		: mmap(NULL, r->cq_size, prot, fl, r->fd, IORING_OFF_CQ_RING);
	r->sqes_size = p->sq_entries * sizeof(struct io_uring_sqe);
	r->sqes = mmap(NULL, r->sqes_size, prot, fl, r->fd, IORING_OFF_SQES);
	if (r->sq == MAP_FAILED || r->cq == MAP_FAILED || r->sqes == MAP_FAILED) {
		int e = err();
		ring_free(r);
		return e;
	}
	unsigned tail = *RING_U32(r->sq, p->sq_off.tail);
	unsigned idx = tail & *RING_U32(r->sq, p->sq_off.ring_mask);
	struct io_uring_sqe *sqe = &r->sqes[idx];
	memset(sqe, 0, sizeof *sqe);
	sqe->opcode = rd ? IORING_OP_READ : IORING_OP_WRITE;
	sqe->fd = peer;
	sqe->addr = (unsigned long)addr;
	sqe->len = (unsigned)len;
	RING_U32(r->sq, p->sq_off.array)[idx] = idx;
	__atomic_store_n(RING_U32(r->sq, p->sq_off.tail), tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, r->fd, 1, 0, 0, NULL, 0) < 0) {
		int e = err();
		ring_free(r);
		return e;
	}
	s->pin = P_URING;
	s->ring = r;
	s->peer = peer;
	return 0;
}

static int do_pin(char **a, int n)
{
	struct slot *s;
	int e;
	pthread_mutex_lock(&mu);
	e = claim(K_PIN, a[0], &s);
	struct slot *m = e ? NULL : find(K_MAP, a[1]);
	if (!e && !m) {
		s->kind = 0;
		e = EINVAL;
	}
	char *addr = m ? m->addr : NULL;
	size_t len = m ? m->len : 0;
	pthread_mutex_unlock(&mu);
	if (e)
		return e;
	const char *via = a[2];
	int rd = strstr(via, "read") != NULL;
	if (strcmp(via, "vmsplice") == 0) {
		e = pin_vmsplice(s, addr, len);
	} else if (n < 4) {
		e = EINVAL;
	} else {
		int flags = rd ? O_RDONLY | O_DIRECT : O_WRONLY | O_CREAT | O_DIRECT;
		int peer = open(a[3], flags | O_CLOEXEC, 0644);
		if (peer < 0) {
			e = err();
		} else if (strncmp(via, "dio_", 4) == 0) {
			ssize_t r = rd ? pread(peer, addr, len, 0) : pwrite(peer, addr, len, 0);
			e = r < 0 ? err() : 0;
			close(peer);
			/* A synchronous pin is over when the op returns: nothing is held. */
			pthread_mutex_lock(&mu);
			s->kind = 0;
			pthread_mutex_unlock(&mu);
			return e;
		} else {
			e = strncmp(via, "aio_", 4) == 0 ? pin_aio(s, peer, addr, len, rd)
				: pin_uring(s, peer, addr, len, rd);
			if (e)
				close(peer);
		}
	}
	pthread_mutex_lock(&mu);
	s->kind = e ? 0 : K_PIN;
	pthread_mutex_unlock(&mu);
	return e;
}

static int do_release(char **a)
{
	pthread_mutex_lock(&mu);
	struct slot *found = find(K_PIN, a[0]);
	struct slot s;
	if (found) {
		s = *found;
		found->kind = 0;
	}
	pthread_mutex_unlock(&mu);
	if (!found)
		return EINVAL;
	int e = 0;
	if (s.pin == P_PIPE) {
		static __thread char buf[1 << 16];
		while (read(s.pipe_rd, buf, sizeof buf) > 0)
			;
		close(s.pipe_rd);
		close(s.pipe_wr);
	} else if (s.pin == P_AIO) {
		struct io_event ev;
		memset(&ev, 0, sizeof ev);
		long r = syscall(SYS_io_getevents, s.ctx, 1, 1, &ev, NULL);
		e = r < 0 ? err() : 0;
		syscall(SYS_io_destroy, s.ctx);
		if (!e && ev.res < 0)
			e = (int)-ev.res;
		close(s.peer);
	} else {
		struct ring *r = s.ring;
		struct io_uring_params *p = &r->p;
		if (syscall(__NR_io_uring_enter, r->fd, 0, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) {
			e = err();
		} else {
			unsigned head = *RING_U32(r->cq, p->cq_off.head);
			unsigned tail = __atomic_load_n(RING_U32(r->cq, p->cq_off.tail), __ATOMIC_ACQUIRE);
			if (head != tail) {
				unsigned mask = *RING_U32(r->cq, p->cq_off.ring_mask);
				struct io_uring_cqe *cqes = (void *)((char *)r->cq + p->cq_off.cqes);
				int res = cqes[head & mask].res;
				__atomic_store_n(RING_U32(r->cq, p->cq_off.head), head + 1, __ATOMIC_RELEASE);
				e = res < 0 ? -res : 0;
			}
		}
		ring_free(r);
		close(s.peer);
	}
	return e;
}

/* One request line; returns 0 or an errno. */
static int handle(char *line)
{
	char *a[8];
	int n = 0;
	char *save = NULL;
	/* strtok_r: every lane's thread splits its own requests at once. */
	for (char *t = strtok_r(line, " \n", &save); t && n < 8; t = strtok_r(NULL, " \n", &save))
		a[n++] = t;
	if (n == 0)
		return EINVAL;
	struct {
		const char *op;
		int args;
		int (*fn)(char **);
	} ops[] = {
		{ "open", 4, do_open }, { "close", 1, do_close }, { "mmap", 4, do_mmap },
		{ "touch", 2, do_touch }, { "munmap", 1, do_munmap }, { "release", 1, do_release },
	};
	if (strcmp(a[0], "pin") == 0)
		return n >= 4 ? do_pin(a + 1, n - 1) : EINVAL;
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (strcmp(a[0], ops[i].op) == 0)
			return n - 1 >= ops[i].args ? ops[i].fn(a + 1) : EINVAL;
	return ENOSYS;
}

static void *lane(void *arg)
{
	char in[4096], out[4096], line[4096], reply[32];
	snprintf(in, sizeof in, "%s/h.%s.in", dir, (char *)arg);
	snprintf(out, sizeof out, "%s/h.%s.out", dir, (char *)arg);
	FILE *f = fopen(in, "r");
	int o = open(out, O_WRONLY | O_CLOEXEC);
	if (!f || o < 0) {
		fprintf(stderr, "cgstorm-helper: lane %s: cannot open its fifos: %s\n",
			(char *)arg, strerror(errno));
		return NULL;
	}
	while (fgets(line, sizeof line, f)) {
		int e = handle(line);
		int k = e ? snprintf(reply, sizeof reply, "err %d\n", e)
			: snprintf(reply, sizeof reply, "ok\n");
		if (write(o, reply, k) != k)
			break;
	}
	fclose(f);
	close(o);
	return NULL;
}

static void say(int e)
{
	char b[32];
	int k = e ? snprintf(b, sizeof b, "err %d\n", e) : snprintf(b, sizeof b, "ok\n");
	if (write(1, b, k) != k)
		exit(EIO);
}

static void *aligned(size_t n)
{
	void *p = NULL;
	if (posix_memalign(&p, 4096, n < 4096 ? 4096 : n))
		return NULL;
	memset(p, 0xa5, n);
	return p;
}

static int wflags(const char *mode)
{
	int f = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
	if (strcmp(mode, "direct") == 0)
		f |= O_DIRECT;
	else if (strcmp(mode, "dsync") == 0)
		f |= O_DSYNC;
	return f;
}

/* Writes BYTES in BS blocks, the last one short; 0 or an errno. */
static int fill(int fd, unsigned long long bytes, size_t bs, char *buf)
{
	while (bytes > 0) {
		size_t n = bytes < bs ? (size_t)bytes : bs;
		ssize_t w = write(fd, buf, n);
		if (w < 0)
			return err();
		bytes -= (size_t)w;
	}
	return 0;
}

static int writer(char **a, int report)
{
	unsigned long long bytes = strtoull(a[1], NULL, 10), bs = strtoull(a[2], NULL, 10);
	int fsync_ = atoi(a[4]), looped = report ? atoi(a[5]) : 0;
	if (bs == 0 || bs > MAX_BS) {
		say(EINVAL);
		return EINVAL;
	}
	int flags = wflags(a[3]);
	int fd = open(a[0], flags, 0644);
	if (fd < 0) {
		int e = err();
		say(e);
		return e;
	}
	char *buf = aligned(bs);
	if (!buf) {
		say(ENOMEM);
		return ENOMEM;
	}
	if (report)
		say(0);
	/* Each pass starts over on the same descriptor, as O_TRUNC would:
	 * reopening the path would find whatever was mounted over it or
	 * unlinked since (as the agent does; the model follows the file). */
	for (;;) {
		int e = fill(fd, bytes, bs, buf);
		if (!e && fsync_ && fsync(fd))
			e = err();
		if (!e && looped && (ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET) < 0))
			e = err();
		if (e || !looped) {
			close(fd);
			if (!report)
				say(e);
			return e;
		}
	}
}

static int reader(char **a)
{
	unsigned long long bs = strtoull(a[1], NULL, 10);
	int direct = atoi(a[2]), looped = atoi(a[3]);
	if (bs == 0 || bs > MAX_BS) {
		say(EINVAL);
		return EINVAL;
	}
	int flags = O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0);
	int fd = open(a[0], flags);
	if (fd < 0) {
		int e = err();
		say(e);
		return e;
	}
	char *buf = aligned(bs);
	say(buf ? 0 : ENOMEM);
	if (!buf)
		return ENOMEM;
	for (;;) {
		ssize_t r;
		while ((r = read(fd, buf, bs)) > 0)
			;
		if (r < 0)
			return err();
		if (!looped)
			return 0;
		if (lseek(fd, 0, SEEK_SET) < 0)
			return err();
	}
}

static int hog(char **a, int n)
{
	size_t bytes = strtoull(a[0], NULL, 10);
	struct timespec tenth = { 0, 100000000 };
	if (n < 2) {
		say(0);
		/* Filled, not zeroed: every page is touched and charged. */
		char *mem = malloc(bytes ? bytes : 1);
		if (!mem)
			return ENOMEM;
		memset(mem, 0xa5, bytes);
		/* The compiler must not drop the allocation it never sees read. */
		__asm__ volatile("" : : "r"(mem) : "memory");
		for (;;)
			pause();
	}
	int fd = open(a[1], (wflags("buffered") & ~O_WRONLY) | O_RDWR, 0644);
	if (fd < 0) {
		int e = err();
		say(e);
		return e;
	}
	say(0);
	char *buf = aligned(1 << 20);
	if (!buf)
		return ENOMEM;
	int e = fill(fd, bytes, 1 << 20, buf);
	if (e)
		return e;
	/* It reads its file back through the descriptor it holds. */
	for (;;) {
		ssize_t k;
		if (lseek(fd, 0, SEEK_SET) < 0)
			return err();
		while ((k = read(fd, buf, 1 << 20)) > 0)
			;
		if (k < 0)
			return err();
		nanosleep(&tenth, NULL);
	}
}

/* The eventual DAX check: maps PATH (so a truncate looks at its pages:
 * dax_layout_busy_page_range returns at once for a file no one maps) and
 * truncates it, which waits while a page of it is still referenced. The
 * alarm ends a wait longer than SECONDS (exit 142, SIGALRM). */
static int idle(const char *path, const char *seconds)
{
	int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return err();
	if (st.st_size == 0)
		return 0;
	if (mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED)
		return err();
	alarm(atoi(seconds));
	return ftruncate(fd, 0) ? err() : 0;
}

static int exit_code(int e)
{
	return e < 1 ? e : (e > 255 ? 255 : e);
}

static int usage(void)
{
	fprintf(stderr, "usage: cgstorm-helper serve DIR LANE... | task writer|reader|hog ARGS... | "
		"write PATH BYTES BS MODE FSYNC | idle PATH SECONDS | check\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "check") == 0) {
		puts("cgstorm-helper 1");
		return 0;
	}
	if (argc >= 3 && strcmp(argv[1], "serve") == 0) {
		dir = argv[2];
		signal(SIGPIPE, SIG_IGN); /* a lane gone: its thread ends on EOF */
		int n = argc - 3;
		pthread_t *t = calloc(n ? n : 1, sizeof *t);
		for (int i = 0; i < n; i++)
			if (pthread_create(&t[i], NULL, lane, argv[3 + i])) {
				perror("cgstorm-helper: pthread_create");
				return 1;
			}
		for (int i = 0; i < n; i++)
			pthread_join(t[i], NULL);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "idle") == 0)
		return exit_code(idle(argv[2], argv[3]));
	if (argc == 7 && strcmp(argv[1], "write") == 0)
		return exit_code(writer(argv + 2, 0));
	if (argc >= 3 && strcmp(argv[1], "task") == 0) {
		const char *k = argv[2];
		if (strcmp(k, "writer") == 0 && argc == 9)
			return exit_code(writer(argv + 3, 1));
		if (strcmp(k, "reader") == 0 && argc == 7)
			return exit_code(reader(argv + 3));
		if (strcmp(k, "hog") == 0 && (argc == 4 || argc == 5))
			return exit_code(hog(argv + 3, argc - 3));
	}
	return usage();
}

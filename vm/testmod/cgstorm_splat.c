// SPDX-License-Identifier: GPL-2.0
/*
 * cgstorm_splat: makes a kernel print, on demand, one of the reports that
 * cgstorm's console parser (harness/report) must recognise, so that its
 * golden tests run on real console output.
 *
 *   insmod cgstorm_splat.ko kind=KIND [path=PATH] [secs=N] [slot=N]
 *
 * KIND is one of:
 *   busy-inodes    pin the inode of PATH (a file on a mounted filesystem) with
 *                  an extra reference that is never dropped; unmounting that
 *                  filesystem then prints "VFS: Busy inodes after unmount"
 *   page-fault     read the guard page after a vmalloc area
 *   null           read a field through a NULL pointer
 *   sleep          mutex_lock with preemption disabled
 *   kfence         allocate until KFENCE samples an object (one every
 *                  kfence.sample_interval ms, default 100), free it, read it
 *   ubsan          read a fixed-size array at SLOT (default: one past its end)
 *   hard-lockup    spin SECS seconds with interrupts off (needs a hard-lockup
 *                  detector and a second CPU to notice it)
 *   wq-lockup      a work item that hogs a per-CPU pool for SECS seconds while
 *                  another item waits behind it (boot with a short
 *                  workqueue.watchdog_thresh and a large
 *                  workqueue.cpu_intensive_thresh_us)
 *   irq-inversion  lockdep: a lock becomes hardirq-safe after a dependency on
 *                  a hardirq-unsafe lock was recorded
 *   safe-unsafe    lockdep: a hardirq-unsafe lock taken under a hardirq-safe one
 *   rcu            lockdep: rcu_dereference() outside a read-side section
 *   unlock         lockdep: unlock of a mutex nobody holds
 *   freed          lockdep: kfree of memory that holds a locked mutex
 *   wait           lockdep: spinlock_t inside a raw_spinlock_t (needs
 *                  CONFIG_PROVE_RAW_LOCK_NESTING)
 *   return-locked  lockdep: insmod returns to user space holding a mutex
 *
 * Every function that does the bad thing is noinline and named after its
 * kind, so the report's title names it. The module cannot be unloaded once
 * a kind has run: some kinds leave references or work behind on purpose.
 */
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/kfence.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/namei.h>
#include <linux/nmi.h>
#include <linux/path.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>

static char *kind = "";
module_param(kind, charp, 0400);
MODULE_PARM_DESC(kind, "the report to provoke (see the source's head comment)");

static char *path = "";
module_param(path, charp, 0400);
MODULE_PARM_DESC(path, "busy-inodes: a file on the filesystem to pin");

static int secs;
module_param(secs, int, 0400);
MODULE_PARM_DESC(secs, "hard-lockup, wq-lockup: how long to spin, in seconds (default 12, 20)");

static int slot = 8;
module_param(slot, int, 0400);
MODULE_PARM_DESC(slot, "ubsan: the index into an array of 8 ints");

/* busy-inodes: the reference that is never dropped. */
static struct inode *pinned_inode;

static noinline int splat_busy_inodes(void)
{
	struct path p;
	int err;

	if (!path[0]) {
		pr_err("cgstorm_splat: busy-inodes needs path=FILE\n");
		return -EINVAL;
	}
	err = kern_path(path, LOOKUP_FOLLOW, &p);
	if (err) {
		pr_err("cgstorm_splat: cannot look up %s: %d\n", path, err);
		return err;
	}
	pinned_inode = igrab(d_inode(p.dentry));
	path_put(&p);
	if (!pinned_inode)
		return -ENOENT;
	pr_info("cgstorm_splat: pinned inode %lu of %s on %s\n",
		pinned_inode->i_ino, path, pinned_inode->i_sb->s_id);
	return 0;
}

static noinline int splat_page_fault(void)
{
	char *area = vmalloc(PAGE_SIZE);

	if (!area)
		return -ENOMEM;
	/* vmalloc leaves an unmapped guard page after every area. */
	pr_info("cgstorm_splat: got %d\n", READ_ONCE(area[PAGE_SIZE]));
	vfree(area);
	return 0;
}

struct splat_node {
	long key;
	struct splat_node *next;
};

/* Never set; read with READ_ONCE so the compiler cannot fold it to NULL. */
static struct splat_node *splat_head;

static noinline int splat_null(void)
{
	struct splat_node *n = READ_ONCE(splat_head);

	pr_info("cgstorm_splat: next is %p\n", READ_ONCE(n->next));
	return 0;
}

static DEFINE_MUTEX(sleep_mutex);

static noinline int splat_sleep(void)
{
	preempt_disable();
	mutex_lock(&sleep_mutex);
	mutex_unlock(&sleep_mutex);
	preempt_enable();
	return 0;
}

static noinline int splat_kfence(void)
{
	unsigned long deadline = jiffies + 30 * HZ;
	char *obj = NULL;

	if (!IS_ENABLED(CONFIG_KFENCE)) {
		pr_err("cgstorm_splat: kfence needs CONFIG_KFENCE\n");
		return -EOPNOTSUPP;
	}
	while (time_before(jiffies, deadline)) {
		obj = kmalloc(64, GFP_KERNEL);
		if (!obj)
			return -ENOMEM;
		if (is_kfence_address(obj))
			break;
		kfree(obj);
		obj = NULL;
		usleep_range(500, 1000);
	}
	if (!obj) {
		pr_err("cgstorm_splat: no KFENCE object in 30 s\n");
		return -ETIMEDOUT;
	}
	memset(obj, 0x5a, 64);
	kfree(obj);
	pr_info("cgstorm_splat: freed object holds %d\n", READ_ONCE(obj[8]));
	return 0;
}

static int splat_table[8];

static noinline int splat_ubsan(void)
{
	/* slot is a module parameter: the compiler cannot know its value. */
	int i = READ_ONCE(slot) & 15;

	/* A read, so that the bad index corrupts nothing. */
	pr_info("cgstorm_splat: table[%d] = %d\n", i, splat_table[i]);
	return 0;
}

static noinline int splat_hard_lockup(void)
{
	/* Long enough for the detector, short of an RCU stall (21 s). */
	int spin = secs ?: 12;
	ktime_t end = ktime_add_ms(ktime_get(), spin * 1000LL);
	int i;

	pr_info("cgstorm_splat: interrupts off on CPU %d for %d s\n",
		raw_smp_processor_id(), spin);
	local_irq_disable();
	do {
		/* Mostly here, so the NMI backtrace's RIP names this function. */
		for (i = 0; i < 100000; i++)
			cpu_relax();
	} while (ktime_before(ktime_get(), end));
	/* Only the hard lockup should be reported, not a soft one on return. */
	touch_softlockup_watchdog();
	local_irq_enable();
	return 0;
}

static void splat_wq_hog(struct work_struct *work)
{
	unsigned long end = jiffies + (secs ?: 20) * HZ;

	/*
	 * Runnable all along, so the pool starts nothing else; cond_resched()
	 * keeps the soft-lockup and RCU-stall detectors quiet.
	 */
	while (time_before(jiffies, end)) {
		cpu_relax();
		cond_resched();
	}
	pr_info("cgstorm_splat: wq hog done\n");
}

static void splat_wq_victim(struct work_struct *work)
{
	pr_info("cgstorm_splat: wq victim ran\n");
}

static DECLARE_WORK(wq_hog_work, splat_wq_hog);
static DECLARE_WORK(wq_victim_work, splat_wq_victim);

static noinline int splat_wq_lockup(void)
{
	int cpu = cpumask_last(cpu_online_mask);

	pr_info("cgstorm_splat: hogging the workqueue pool of CPU %d for %d s\n",
		cpu, secs ?: 20);
	queue_work_on(cpu, system_wq, &wq_hog_work);
	queue_work_on(cpu, system_wq, &wq_victim_work);
	return 0;
}

/*
 * Lockdep patterns that need a lock taken in hard interrupt context: an
 * hrtimer in HRTIMER_MODE_REL_HARD runs its callback there.
 */
struct irq_taker {
	struct hrtimer timer;
	spinlock_t *lock;
	struct completion done;
};

static enum hrtimer_restart splat_irq_take(struct hrtimer *timer)
{
	struct irq_taker *t = container_of(timer, struct irq_taker, timer);

	spin_lock(t->lock);
	spin_unlock(t->lock);
	complete(&t->done);
	return HRTIMER_NORESTART;
}

static void take_in_hardirq(spinlock_t *lock)
{
	struct irq_taker t = { .lock = lock };

	init_completion(&t.done);
	hrtimer_init(&t.timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_HARD);
	t.timer.function = splat_irq_take;
	hrtimer_start(&t.timer, ms_to_ktime(1), HRTIMER_MODE_REL_HARD);
	wait_for_completion(&t.done);
	hrtimer_cancel(&t.timer);
}

static DEFINE_SPINLOCK(inv_outer);
static DEFINE_SPINLOCK(inv_inner);

static noinline int splat_irq_inversion(void)
{
	/* inv_outer -> inv_inner, both with interrupts off: no irq usage yet. */
	local_irq_disable();
	spin_lock(&inv_outer);
	spin_lock(&inv_inner);
	spin_unlock(&inv_inner);
	spin_unlock(&inv_outer);
	local_irq_enable();
	/* inv_inner becomes hardirq-unsafe ... */
	spin_lock(&inv_inner);
	spin_unlock(&inv_inner);
	/* ... and inv_outer hardirq-safe: an interrupt can now deadlock. */
	take_in_hardirq(&inv_outer);
	return 0;
}

static DEFINE_SPINLOCK(order_safe);
static DEFINE_SPINLOCK(order_unsafe);

static noinline int splat_safe_unsafe(void)
{
	unsigned long flags;

	take_in_hardirq(&order_safe);
	spin_lock(&order_unsafe);
	spin_unlock(&order_unsafe);
	spin_lock_irqsave(&order_safe, flags);
	spin_lock(&order_unsafe);
	spin_unlock(&order_unsafe);
	spin_unlock_irqrestore(&order_safe, flags);
	return 0;
}

struct splat_conf {
	int value;
};

static struct splat_conf splat_conf_v1 = { .value = 1 };
static struct splat_conf __rcu *splat_conf_ptr = &splat_conf_v1;

static noinline int splat_rcu(void)
{
	/* No rcu_read_lock(): PROVE_RCU complains. */
	struct splat_conf *c = rcu_dereference(splat_conf_ptr);

	pr_info("cgstorm_splat: conf value %d\n", c->value);
	return 0;
}

static DEFINE_MUTEX(unlock_mutex);

static noinline int splat_unlock(void)
{
	mutex_unlock(&unlock_mutex);
	return 0;
}

struct splat_obj {
	struct mutex lock;
	long data;
};

static noinline int splat_freed(void)
{
	struct splat_obj *o = kzalloc(sizeof(*o), GFP_KERNEL);

	if (!o)
		return -ENOMEM;
	mutex_init(&o->lock);
	mutex_lock(&o->lock);
	/* Freed while locked; the lock is never released (it is gone). */
	kfree(o);
	return 0;
}

static DEFINE_RAW_SPINLOCK(wait_raw);
static DEFINE_SPINLOCK(wait_sleepable_on_rt);

static noinline int splat_wait(void)
{
	raw_spin_lock(&wait_raw);
	spin_lock(&wait_sleepable_on_rt);
	spin_unlock(&wait_sleepable_on_rt);
	raw_spin_unlock(&wait_raw);
	return 0;
}

static DEFINE_MUTEX(return_mutex);

static noinline int splat_return_locked(void)
{
	mutex_lock(&return_mutex);
	return 0;
}

/* kmemleak: "unreferenced object ... (size 512)", allocated here. */
static noinline int splat_leak(void)
{
	void *p = kmalloc(512, GFP_KERNEL);

	if (!p)
		return -ENOMEM;
	memset(p, 0x5a, 512);
	/* Forgotten: nothing keeps the pointer. */
	p = NULL;
	return 0;
}

static DEFINE_MUTEX(exit_mutex);

static int held_thread(void *unused)
{
	mutex_lock(&exit_mutex);
	/* Exits holding it: "WARNING: ... still has locks held!" from do_exit. */
	return 0;
}

static noinline int splat_held(void)
{
	struct task_struct *t = kthread_run(held_thread, NULL, "cgstorm_held");

	return PTR_ERR_OR_ZERO(t);
}

static const struct {
	const char *name;
	int (*run)(void);
} splat_kinds[] = {
	{ "leak", splat_leak },
	{ "held", splat_held },
	{ "busy-inodes", splat_busy_inodes },
	{ "page-fault", splat_page_fault },
	{ "null", splat_null },
	{ "sleep", splat_sleep },
	{ "kfence", splat_kfence },
	{ "ubsan", splat_ubsan },
	{ "hard-lockup", splat_hard_lockup },
	{ "wq-lockup", splat_wq_lockup },
	{ "irq-inversion", splat_irq_inversion },
	{ "safe-unsafe", splat_safe_unsafe },
	{ "rcu", splat_rcu },
	{ "unlock", splat_unlock },
	{ "freed", splat_freed },
	{ "wait", splat_wait },
	{ "return-locked", splat_return_locked },
};

static int __init cgstorm_splat_init(void)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(splat_kinds); i++) {
		if (strcmp(kind, splat_kinds[i].name) == 0) {
			pr_info("cgstorm_splat: kind=%s\n", kind);
			return splat_kinds[i].run();
		}
	}
	pr_err("cgstorm_splat: unknown kind \"%s\" (kinds: see the module's source)\n",
	       kind);
	return -EINVAL;
}
module_init(cgstorm_splat_init);

/* No module_exit: once a kind has run, the module stays. */

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("cgstorm: provoke kernel reports for console-parser tests");

//! Report forms no recording here shows. Every input in this file is
//! SYNTHESISED — written from the kernel's format strings, or a real golden
//! log edited as the test says — and none of it is a recording.

use std::fs;
use std::path::Path;

use cgstorm_report::{contains_report, parse, ConsoleScanner, Kind, Report};

fn golden_console(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let text = String::from_utf8_lossy(&fs::read(path).unwrap()).into_owned();
    text.split_once("\n\n").unwrap().1.to_owned()
}

/// Parses and checks `contains_report` agrees.
fn reports(console: &str) -> Vec<Report> {
    let reports = parse(console);
    assert_eq!(contains_report(console), !reports.is_empty());
    reports
}

fn titles(console: &str) -> Vec<(Kind, String)> {
    reports(console)
        .into_iter()
        .map(|r| (r.kind, r.title))
        .collect()
}

/// The real WARNING of splat-warn-6.12.log turned into the 6.12 busy-inodes
/// report: generic_shutdown_super's CHECK_DATA_CORRUPTION prints the message
/// after "cut here" and then WARNs at fs/super.c.
fn busy_inodes_612(warning_line: &str, message_first: bool) -> String {
    let console = golden_console("splat-warn-6.12.log");
    let message = "[   16.264000][   T68] VFS: Busy inodes after unmount of loop0 (ext4)";
    let mut out = String::new();
    for line in console.lines() {
        if line.contains("] WARNING: CPU: 1 PID: 68 at samples/splat/splat.c:138") {
            if message_first {
                out.push_str(message);
                out.push('\n');
            }
            out.push_str("[   16.264606][   T68] ");
            out.push_str(warning_line);
            out.push('\n');
            if !message_first {
                out.push_str(message);
                out.push('\n');
            }
        } else {
            out.push_str(&line.replace("splat_init+0x12a", "generic_shutdown_super+0x12a"));
            out.push('\n');
        }
    }
    out
}

#[test]
fn busy_inodes_wrapped_in_a_warning_is_busy_inodes() {
    let old_warn = "WARNING: CPU: 1 PID: 68 at fs/super.c:650 generic_shutdown_super+0x12a/0xff0";
    let new_warn =
        "WARNING: fs/super.c:650 at generic_shutdown_super+0x12a/0xff0, CPU#1: umount/68";
    for warning in [old_warn, new_warn] {
        for message_first in [true, false] {
            let console = busy_inodes_612(warning, message_first);
            let got = reports(&console);
            assert_eq!(got.len(), 1, "{warning} {message_first}: {got:#?}");
            assert_eq!(got[0].kind, Kind::BusyInodes);
            // The same title as 6.1's form, which names no fs type.
            assert_eq!(got[0].title, "VFS: Busy inodes after unmount");
            assert!(got[0].text.contains("(ext4)"), "{}", got[0].text);
            assert!(got[0].text.contains("Call Trace:"), "{}", got[0].text);
            assert!(got[0].text.contains("---[ end trace"));
        }
    }
}

#[test]
fn busy_inodes_historic_forms() {
    // 2.6.16 .. 6.5 (no fs type), then pre-2.6.16, as printed by 6.1-era
    // kernels without the caller field; each followed by an unrelated line.
    let console = "\
[  100.000001] VFS: Busy inodes after unmount of sda1. Self-destruct in 5 seconds.  Have a nice day...
[  100.000002] EXT4-fs (loop1): mounted filesystem with ordered data mode.
[  200.000001] VFS: Busy inodes after unmount. Self-destruct in 5 seconds.  Have a nice day...
[  200.000002] cgstorm: lane 1 op 9 umount /mnt/a
[  300.000001] BUG: Dentry 00000000b4c7a2f1{i=c,n=a}  still in use (1) [unmount of ext4 loop0]
";
    let got = reports(console);
    let summary: Vec<_> = got
        .iter()
        .map(|r| (r.kind, r.title.as_str(), r.corrupted))
        .collect();
    assert_eq!(
        summary,
        [
            (Kind::BusyInodes, "VFS: Busy inodes after unmount", false),
            (Kind::BusyInodes, "BUG: Dentry still in use (ext4)", false),
        ],
        "the second busy-inodes line repeats the first title and is dropped"
    );
    assert_eq!(got[0].text.lines().count(), 1, "{}", got[0].text);
    assert_eq!(got[1].marker.as_ref().map(|m| m.op), Some(9));
}

/// warn_alloc()'s output (mm/page_alloc.c format) on a 6.1-style console:
/// memory pressure is provoked on purpose, so it is no report.
#[test]
fn page_allocation_failure_is_not_a_report() {
    let console = "\
[   50.100000] cgstorm: lane 0 op 4 write hog/memory.max 16M
[   50.200000] tail: page allocation failure: order:0, mode:0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), nodemask=(null),cpuset=/,mems_allowed=0
[   50.200001] CPU: 1 PID: 80 Comm: tail Not tainted 6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2
[   50.200002] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[   50.200003] Call Trace:
[   50.200004]  <TASK>
[   50.200005]  dump_stack_lvl+0x44/0x5c
[   50.200006]  warn_alloc+0x137/0x1b0
[   50.200007]  __alloc_pages_slowpath.constprop.0+0xc6f/0xcb0
[   50.200008]  __alloc_pages+0x2f1/0x320
[   50.200009]  folio_alloc+0x17/0x50
[   50.200010]  do_anonymous_page+0x7f/0x4d0
[   50.200011]  __handle_mm_fault+0x6b0/0xc10
[   50.200012]  handle_mm_fault+0xdb/0x2d0
[   50.200013]  do_user_addr_fault+0x191/0x550
[   50.200014]  exc_page_fault+0x70/0x170
[   50.200015]  asm_exc_page_fault+0x22/0x30
[   50.200016] RIP: 0033:0x4a2b3c
[   50.200017]  </TASK>
[   50.200018] Mem-Info:
[   50.200019] active_anon:1234 inactive_anon:0 isolated_anon:0
[   50.200020] Node 0 DMA free:1024kB boost:0kB min:32kB low:44kB high:56kB
[   50.200021] lowmem_reserve[]: 0 1920 1920 1920 1920
[   50.200022] 4096 total pagecache pages
[   50.200023] Free swap  = 0kB
";
    assert_eq!(titles(console), []);
}

/// The real kernel BUG of splat-bug-6.12.log with panic_on_oops: the panic
/// after it is part of that report, not a second one.
#[test]
fn panic_after_a_report_belongs_to_it() {
    let mut console = golden_console("splat-bug-6.12.log");
    let at = console.find("[   12.180486]").unwrap();
    console.insert_str(
        at,
        "[   12.170900][   T66] Kernel panic - not syncing: Fatal exception\n\
         [   12.171000][   T66] Kernel Offset: 0x1a000000 from 0xffffffff81000000\n\
         [   12.171100][   T66] ---[ end Kernel panic - not syncing: Fatal exception ]---\n",
    );
    let got = reports(&console);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].title, "kernel BUG in splat_init");
    assert!(got[0]
        .text
        .ends_with("---[ end Kernel panic - not syncing: Fatal exception ]---\n"));

    // A panic later in the log, after the report is over, is no new report either.
    let later = format!("{console}[   99.000000][    T1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\n");
    assert_eq!(reports(&later).len(), 1);
}

#[test]
fn a_panic_alone_whose_cause_was_lost_is_corrupted() {
    let console = "[    5.0] Kernel panic - not syncing: Fatal exception in interrupt\n";
    let got = reports(console);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].kind, Kind::Panic);
    assert_eq!(got[0].title, "kernel panic: Fatal exception in interrupt");
    assert!(got[0].corrupted);
}

#[test]
fn more_headers() {
    // One header line each, as the kernel formats them; the report bodies are
    // cut, so frame-less titles are corrupted.
    let cases = [
        (
            "BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 33s!",
            Kind::WorkqueueLockup,
            "BUG: workqueue lockup",
            false,
        ),
        (
            "NMI watchdog: Watchdog detected hard LOCKUP on cpu 1",
            Kind::HardLockup,
            "BUG: hard lockup",
            true,
        ),
        (
            "BUG: KFENCE: use-after-free read in test_use_after_free_read+0xb3/0x143",
            Kind::Kfence,
            "KFENCE: use-after-free read in test_use_after_free_read",
            false,
        ),
        (
            "BUG: KASAN: double-free in kfree+0x1/0x2",
            Kind::Kasan,
            "KASAN: double-free",
            true,
        ),
        (
            "UBSAN: array-index-out-of-bounds in fs/ext4/super.c:123:45",
            Kind::Ubsan,
            "UBSAN: array-index-out-of-bounds",
            true,
        ),
        (
            "BUG: unable to handle page fault for address: ffffc90000a3c000",
            Kind::Bug,
            "BUG: unable to handle kernel paging request",
            true,
        ),
        (
            "BUG: sleeping function called from invalid context at mm/slab.h:1",
            Kind::Bug,
            "BUG: sleeping function called from invalid context",
            true,
        ),
        (
            "BUG: Bad page state in process tail  pfn:1a2b3",
            Kind::Bug,
            "BUG: Bad page state",
            false,
        ),
        (
            "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
            Kind::Panic,
            "kernel panic: VFS: Unable to mount root fs on unknown-block(NUM,NUM)",
            false,
        ),
    ];
    for (line, kind, title, corrupted) in cases {
        let got = reports(&format!("[    1.000000] {line}\n"));
        assert_eq!(got.len(), 1, "{line}");
        assert_eq!(
            (got[0].kind, got[0].title.as_str(), got[0].corrupted),
            (kind, title, corrupted),
            "{line}"
        );
    }
}

#[test]
fn the_scanner_yields_a_report_as_soon_as_it_is_over() {
    let console = golden_console("splat-warn-6.12.log");
    let end = console.find("---[ end trace").unwrap();
    let next_line = end + console[end..].find('\n').unwrap() + 1;
    let after_next = next_line + console[next_line..].find('\n').unwrap() + 1;
    let bytes = console.as_bytes();
    let mut scanner = ConsoleScanner::new();
    assert!(scanner.feed(&bytes[..end]).is_empty());
    assert_eq!(scanner.pending(), Some(Kind::Warning));
    assert!(scanner.feed(&bytes[end..next_line]).is_empty());
    // The next kernel line of the same task is no part of the report.
    let got = scanner.feed(&bytes[next_line..after_next]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].title, "WARNING in splat_init");
    assert_eq!(scanner.pending(), None);
    assert!(scanner.finish().is_empty());
}

#[test]
fn a_report_is_cut_at_the_next_op_marker() {
    // 6.1-style (no caller field): the marker is the only sign the report is over.
    let console = "\
[    9.000000] cgstorm: lane 3 op 41 rmdir /sys/fs/cgroup/a/b
[    9.100000] BUG: scheduling while atomic: cgstorm-agent/90/0x00000002
[    9.100001] cgstorm: lane 3 op 42 mkdir /sys/fs/cgroup/a/c
[    9.100002] some other kernel line
";
    let got = reports(console);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].text,
        "BUG: scheduling while atomic: cgstorm-agent/90/0x00000002\n"
    );
    assert!(got[0].corrupted);
    assert_eq!(got[0].first_line, 1);
    let m = got[0].marker.as_ref().unwrap();
    assert_eq!(
        (m.lane, m.op, m.text.as_str()),
        (3, 41, "rmdir /sys/fs/cgroup/a/b")
    );
}

#[test]
fn garbage_is_harmless() {
    let mut bytes = vec![0xff_u8; 10_000];
    bytes.extend_from_slice(b"\n\x1b[1;31mBUG: KASAN\x1b[0m\r\n\0\0WARNING: CPU: x\n");
    let mut scanner = ConsoleScanner::new();
    let mut got = scanner.feed(&bytes);
    got.extend(scanner.finish());
    assert!(got.is_empty() || got.iter().all(|r| r.title.len() <= 120));
    assert_eq!(got, parse(&String::from_utf8_lossy(&bytes)));
}

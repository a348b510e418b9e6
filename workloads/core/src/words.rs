//! Small keyword enums used in op arguments (controllers, filesystems, modes).

use std::fmt;
use std::str::FromStr;

use crate::names::{serde_via_str, NameError};

macro_rules! word_enum {
    ($(#[$m:meta])* $ty:ident, $what:literal { $($(#[$vm:meta])* $v:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, arbitrary::Arbitrary)]
        pub enum $ty { $($(#[$vm])* $v,)* }

        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$v,)*];
            /// The keyword as a program writes it.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$v => $s,)* }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                match s {
                    $($s => Ok($ty::$v),)*
                    _ => Err(NameError::new($what, s, concat!("expected one of:" $(, " ", $s)*))),
                }
            }
        }

        serde_via_str!($ty, concat!("one of:" $(, " ", $s)*));
    };
}

word_enum! {
    /// A cgroup v2 controller a program can enable or disable.
    Ctrl, "controller" {
        /// The memory controller.
        Memory = "memory",
        /// The io controller (needed with memory for cgroup writeback).
        Io = "io",
        /// The pids controller.
        Pids = "pids",
    }
}

word_enum! {
    /// How a writer opens its file.
    IoMode, "io mode" {
        /// Through the page cache.
        Buffered = "buffered",
        /// `O_DIRECT`.
        Direct = "direct",
        /// `O_DSYNC`.
        Dsync = "dsync",
    }
}

word_enum! {
    /// A filesystem `mkfs` can make.
    BlockFs, "filesystem" {
        /// ext4 (made with a 4K block size so DAX can work).
        Ext4 = "ext4",
        /// xfs.
        Xfs = "xfs",
    }
}

word_enum! {
    /// A filesystem type `mount` can mount.
    FsType, "filesystem type" {
        /// tmpfs (no device).
        Tmpfs = "tmpfs",
        /// ramfs (no device).
        Ramfs = "ramfs",
        /// ext4 on a block device.
        Ext4 = "ext4",
        /// xfs on a block device.
        Xfs = "xfs",
    }
}

impl FsType {
    /// Whether this filesystem lives on a block device.
    pub fn needs_device(self) -> bool {
        matches!(self, FsType::Ext4 | FsType::Xfs)
    }

    /// The block filesystem this type mounts, if any.
    pub fn block(self) -> Option<BlockFs> {
        match self {
            FsType::Ext4 => Some(BlockFs::Ext4),
            FsType::Xfs => Some(BlockFs::Xfs),
            _ => None,
        }
    }
}

word_enum! {
    /// A mount option.
    MountOpt, "mount option" {
        /// `dax` (the old spelling of `dax=always` on ext4 and xfs).
        Dax = "dax",
        /// `dax=always`.
        DaxAlways = "dax=always",
        /// `dax=never`.
        DaxNever = "dax=never",
        /// `dax=inode`: DAX per file attribute.
        DaxInode = "dax=inode",
        /// `lazytime` (MS_LAZYTIME).
        Lazytime = "lazytime",
        /// `noquota`.
        Noquota = "noquota",
        /// Read-only (MS_RDONLY).
        Ro = "ro",
        /// Read-write.
        Rw = "rw",
    }
}

word_enum! {
    /// How a `pin` op takes references to the pages of a mapping.
    PinVia, "pin method" {
        /// A synchronous `O_DIRECT` read from the peer file into the mapping.
        DioRead = "dio_read",
        /// A synchronous `O_DIRECT` write from the mapping to the peer file.
        DioWrite = "dio_write",
        /// An AIO `O_DIRECT` read into the mapping, reaped by `release`.
        AioRead = "aio_read",
        /// An AIO `O_DIRECT` write from the mapping, reaped by `release`.
        AioWrite = "aio_write",
        /// An io_uring `O_DIRECT` read into the mapping, reaped by `release`.
        UringRead = "uring_read",
        /// An io_uring `O_DIRECT` write from the mapping, reaped by `release`.
        UringWrite = "uring_write",
        /// `vmsplice` of the mapping into a pipe; `release` reads the pipe.
        Vmsplice = "vmsplice",
    }
}

impl PinVia {
    /// Whether the pin does `O_DIRECT` I/O against a peer file.
    pub fn uses_peer(self) -> bool {
        self != PinVia::Vmsplice
    }

    /// Whether the pin reads its peer into the mapping (else it writes
    /// the mapping to its peer, which it opens with `O_CREAT`).
    pub fn reads(self) -> bool {
        matches!(self, PinVia::DioRead | PinVia::AioRead | PinVia::UringRead)
    }

    /// Whether the pin outlives the op (held until `release`).
    pub fn is_held(self) -> bool {
        !matches!(self, PinVia::DioRead | PinVia::DioWrite)
    }
}

word_enum! {
    /// A cgroup file the `read` op reads.
    ReadFile, "cgroup file" {
        /// `cgroup.events`.
        Events = "cgroup.events",
        /// `cgroup.stat`.
        Stat = "cgroup.stat",
        /// `memory.stat`.
        MemoryStat = "memory.stat",
        /// `memory.current` (`memory.usage_in_bytes` in v1).
        MemoryCurrent = "memory.current",
    }
}

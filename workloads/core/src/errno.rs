//! Linux errno values by name, so programs and predictions can say `EBUSY`.
//!
//! Numbers are the x86_64/generic Linux ones; the crate never asks the host.

use std::fmt;
use std::str::FromStr;

macro_rules! errnos {
    ($($name:ident = $num:literal, $text:literal;)*) => {
        /// An errno a kernel operation can fail with.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[allow(clippy::upper_case_acronyms, missing_docs)]
        pub enum Errno { $($name,)* }

        impl Errno {
            /// Every errno this crate knows, in numeric order.
            pub const ALL: &'static [Errno] = &[$(Errno::$name,)*];

            /// The errno's number on Linux.
            pub fn number(self) -> i32 {
                match self { $(Errno::$name => $num,)* }
            }

            /// The errno for a number, if this crate knows it.
            pub fn from_number(n: i32) -> Option<Errno> {
                match n { $($num => Some(Errno::$name),)* _ => None }
            }

            /// Its symbolic name, e.g. `"EBUSY"`.
            pub fn name(self) -> &'static str {
                match self { $(Errno::$name => stringify!($name),)* }
            }

            /// The C library's description, e.g. "Device or resource busy".
            pub fn description(self) -> &'static str {
                match self { $(Errno::$name => $text,)* }
            }
        }

        impl FromStr for Errno {
            type Err = UnknownErrno;
            fn from_str(s: &str) -> Result<Self, UnknownErrno> {
                match s {
                    $(stringify!($name) => Ok(Errno::$name),)*
                    "ENOTSUP" => Ok(Errno::EOPNOTSUPP),
                    "EWOULDBLOCK" => Ok(Errno::EAGAIN),
                    _ => Err(UnknownErrno(s.to_string())),
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, "Operation not permitted";
    ENOENT = 2, "No such file or directory";
    ESRCH = 3, "No such process";
    EINTR = 4, "Interrupted system call";
    EIO = 5, "Input/output error";
    ENXIO = 6, "No such device or address";
    E2BIG = 7, "Argument list too long";
    EBADF = 9, "Bad file descriptor";
    ECHILD = 10, "No child processes";
    EAGAIN = 11, "Resource temporarily unavailable";
    ENOMEM = 12, "Cannot allocate memory";
    EACCES = 13, "Permission denied";
    EFAULT = 14, "Bad address";
    ENOTBLK = 15, "Block device required";
    EBUSY = 16, "Device or resource busy";
    EEXIST = 17, "File exists";
    EXDEV = 18, "Invalid cross-device link";
    ENODEV = 19, "No such device";
    ENOTDIR = 20, "Not a directory";
    EISDIR = 21, "Is a directory";
    EINVAL = 22, "Invalid argument";
    ENFILE = 23, "Too many open files in system";
    EMFILE = 24, "Too many open files";
    ENOTTY = 25, "Inappropriate ioctl for device";
    ETXTBSY = 26, "Text file busy";
    EFBIG = 27, "File too large";
    ENOSPC = 28, "No space left on device";
    ESPIPE = 29, "Illegal seek";
    EROFS = 30, "Read-only file system";
    EMLINK = 31, "Too many links";
    EPIPE = 32, "Broken pipe";
    EDOM = 33, "Numerical argument out of domain";
    ERANGE = 34, "Numerical result out of range";
    EDEADLK = 35, "Resource deadlock avoided";
    ENAMETOOLONG = 36, "File name too long";
    ENOLCK = 37, "No locks available";
    ENOSYS = 38, "Function not implemented";
    ENOTEMPTY = 39, "Directory not empty";
    ELOOP = 40, "Too many levels of symbolic links";
    ENODATA = 61, "No data available";
    ETIME = 62, "Timer expired";
    EPROTO = 71, "Protocol error";
    EBADMSG = 74, "Bad message";
    EOVERFLOW = 75, "Value too large for defined data type";
    ENOTSOCK = 88, "Socket operation on non-socket";
    EOPNOTSUPP = 95, "Operation not supported";
    ENOBUFS = 105, "No buffer space available";
    ENOTCONN = 107, "Transport endpoint is not connected";
    ETIMEDOUT = 110, "Connection timed out";
    EALREADY = 114, "Operation already in progress";
    EINPROGRESS = 115, "Operation now in progress";
    ESTALE = 116, "Stale file handle";
    EUCLEAN = 117, "Structure needs cleaning";
    EDQUOT = 122, "Disk quota exceeded";
    ENOMEDIUM = 123, "No medium found";
    EMEDIUMTYPE = 124, "Wrong medium type";
    ECANCELED = 125, "Operation canceled";
    ENOKEY = 126, "Required key not available";
    EOWNERDEAD = 130, "Owner died";
    EHWPOISON = 133, "Memory page has hardware error";
}

/// A name that is not an errno this crate knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown errno `{0}` (expected a name such as EBUSY or ENOENT)")]
pub struct UnknownErrno(pub String);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for &e in Errno::ALL {
            assert_eq!(e.name().parse::<Errno>(), Ok(e));
            assert_eq!(Errno::from_number(e.number()), Some(e));
        }
        assert_eq!("ENOTSUP".parse::<Errno>(), Ok(Errno::EOPNOTSUPP));
        assert_eq!(Errno::EBUSY.number(), 16);
        assert!("EFOO".parse::<Errno>().is_err());
    }
}

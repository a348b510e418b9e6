//! Kernel console analysis (see issue 4).

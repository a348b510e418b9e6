//! VM backends (see issue 3).

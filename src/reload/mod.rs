//! Watching policy and script files, recompiling off the hot path, and swapping atomically.

//! safetensors reader (single file and sharded), memory-mapped.

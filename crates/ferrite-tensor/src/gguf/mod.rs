//! GGUF v2/v3 reader (memory-mapped). See the module docs once written.

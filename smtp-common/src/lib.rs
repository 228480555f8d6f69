//! Types shared by the kernel programs (`smtp-ebpf`) and userspace (`smtp-user`).
//!
//! Everything here is `#[repr(C)]` and `bytemuck::Pod`, so both sides read the
//! same bytes the same way. (Filled in by the datapath work.)
#![no_std]

//! smtp-monitor kernel programs.
//!
//! Three entry points share one body ([`packet::handle`]): XDP ingress, TC
//! ingress and TC egress. Each parses Ethernet (one optional 802.1Q/802.1ad
//! tag), IPv4/IPv6 (common extension headers skipped) and TCP; packets whose
//! ports are not monitored return PASS right there. While enforcement is on,
//! monitored segments are dropped when their client address is in the
//! blocklist or their flow has a drop verdict (payload-less RSTs excepted),
//! and a client segment ending a message on a gated flow is held (copied to
//! userspace flagged `REC_HELD`, then dropped) — or, with the netfilter-queue
//! gate on (`Config::gate_mark`, TC ingress), every client segment with
//! payload of a gated flow is marked for the monitor's queue and passes,
//! flagged `REC_HELD` too. The rest is copied to the
//! ring buffer (header + payload, split in records of at most
//! [`smtp_common::CHUNK`] bytes).
#![no_std]
#![no_main]

mod csum;
mod maps;
mod packet;
mod parse;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK, TC_ACT_SHOT},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use smtp_common::{HOOK_TC_EGRESS, HOOK_TC_INGRESS, HOOK_XDP};

use packet::{Action, SkbCtx, XdpCtx};

#[xdp]
pub fn smtp_xdp_ingress(ctx: XdpContext) -> u32 {
    match packet::handle(&XdpCtx(&ctx), HOOK_XDP) {
        Action::Pass => xdp_action::XDP_PASS,
        Action::Drop => xdp_action::XDP_DROP,
    }
}

#[classifier]
pub fn smtp_tc_ingress(ctx: TcContext) -> i32 {
    match packet::handle(&SkbCtx(&ctx), HOOK_TC_INGRESS) {
        Action::Pass => TC_ACT_OK,
        Action::Drop => TC_ACT_SHOT,
    }
}

#[classifier]
pub fn smtp_tc_egress(ctx: TcContext) -> i32 {
    match packet::handle(&SkbCtx(&ctx), HOOK_TC_EGRESS) {
        Action::Pass => TC_ACT_OK,
        Action::Drop => TC_ACT_SHOT,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

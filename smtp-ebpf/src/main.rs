//! smtp-monitor kernel programs.
//!
//! Three entry points share one body ([`packet::handle`]): XDP ingress, TC
//! ingress and TC egress. Each parses Ethernet (up to two VLAN tags),
//! IPv4/IPv6 (up to eight extension headers skipped) and TCP; packets whose
//! ports are not monitored return PASS right there. While enforcement is on,
//! monitored segments are dropped when their client address is in the
//! blocklist or their flow has a drop verdict (payload-less RSTs excepted),
//! and a client segment ending a message on a gated flow is held (copied to
//! userspace flagged `REC_HELD`, then dropped) — or, with the netfilter-queue
//! gate on (`Config::gate_mark`, TC ingress), every client segment with
//! payload of a gated flow is marked for the monitor's queue and passes,
//! flagged `REC_HELD` too. The rest is copied to the
//! ring buffer (header + payload, split in records of at most
//! [`smtp_common::CHUNK`] bytes). What the program cannot record completely
//! (fragments, header chains beyond the limits, URG) is dropped while
//! enforcing (fail closed) and counted by reason; decisions are traced with
//! aya-log when userspace loads the program with a log level.
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

use maps::{LOG_TC, LOG_XDP};
use packet::{Action, Event, SkbCtx, XdpCtx};

#[xdp]
pub fn smtp_xdp_ingress(ctx: XdpContext) -> u32 {
    let verdict = match packet::handle(&XdpCtx(&ctx), HOOK_XDP, &mut Event) {
        Action::Pass => xdp_action::XDP_PASS,
        Action::Drop => xdp_action::XDP_DROP,
    };
    if packet::event_pending(verdict) {
        // Returns only when no logger is installed (logging off).
        unsafe { LOG_XDP.tail_call(&ctx, 0) };
        packet::clear_event();
    }
    verdict
}

#[classifier]
pub fn smtp_tc_ingress(ctx: TcContext) -> i32 {
    tc(&ctx, HOOK_TC_INGRESS)
}

#[classifier]
pub fn smtp_tc_egress(ctx: TcContext) -> i32 {
    tc(&ctx, HOOK_TC_EGRESS)
}

#[inline(always)]
fn tc(ctx: &TcContext, hook: u8) -> i32 {
    let verdict = match packet::handle(&SkbCtx(ctx), hook, &mut Event) {
        Action::Pass => TC_ACT_OK,
        Action::Drop => TC_ACT_SHOT,
    };
    if packet::event_pending(verdict as u32) {
        unsafe { LOG_TC.tail_call(ctx, 0) };
        packet::clear_event();
    }
    verdict
}

/// Logs the decision the TC program noted (tail-called; see `packet::Event`).
#[classifier]
pub fn smtp_log_tc(_ctx: TcContext) -> i32 {
    packet::log_pending() as i32
}

/// Logs the decision the XDP program noted (tail-called).
#[xdp]
pub fn smtp_log_xdp(_ctx: XdpContext) -> u32 {
    packet::log_pending()
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

//! The interface carrying the default route, from
//! `/proc/thread-self/net/route` and `.../ipv6_route` (the calling thread's
//! network namespace).

use std::fs;

/// Name of the interface of the IPv4 default route with the lowest metric,
/// else of the IPv6 one; `None` when there is no default route.
pub fn default_route_interface() -> Option<String> {
    let v4 = fs::read_to_string("/proc/thread-self/net/route").unwrap_or_default();
    if let Some(i) = parse_ipv4_routes(&v4) {
        return Some(i);
    }
    let v6 = fs::read_to_string("/proc/thread-self/net/ipv6_route").unwrap_or_default();
    parse_ipv6_routes(&v6)
}

const RTF_UP: u32 = 0x1;

/// `/proc/net/route`: `Iface Destination Gateway Flags RefCnt Use Metric Mask ...`.
pub fn parse_ipv4_routes(text: &str) -> Option<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, flags, metric, mask) =
                (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let metric: u32 = metric.parse().ok()?;
            (*dest == "00000000" && *mask == "00000000" && flags & RTF_UP != 0)
                .then(|| (metric, iface.to_string()))
        })
        .min()
        .map(|(_, i)| i)
}

/// `/proc/net/ipv6_route`: `dest plen src splen nexthop metric refcnt use flags iface`.
pub fn parse_ipv6_routes(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, plen, metric, flags, iface) =
                (f.first()?, f.get(1)?, f.get(5)?, f.get(8)?, f.get(9)?);
            let metric = u32::from_str_radix(metric, 16).ok()?;
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let zero = dest.len() == 32 && dest.bytes().all(|b| b == b'0');
            (zero && *plen == "00" && flags & RTF_UP != 0 && *iface != "lo")
                .then(|| (metric, iface.to_string()))
        })
        .min()
        .map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_default_lowest_metric() {
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth1\t00000000\t010012C6\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
                 eth0\t00000000\t010011AC\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                 eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(parse_ipv4_routes(t).as_deref(), Some("eth0"));
    }

    #[test]
    fn ipv4_no_default() {
        let t = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                 eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\n";
        assert_eq!(parse_ipv4_routes(t), None);
    }

    #[test]
    fn ipv6_default() {
        let t = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
                 00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010002000000000000000000000001 00000400 00000001 00000000 00000003   veth-s\n\
                 00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
        assert_eq!(parse_ipv6_routes(t).as_deref(), Some("veth-s"));
    }
}

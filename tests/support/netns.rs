//! A NAT made of network namespaces, as a gateway behind one meets it: a private network
//! (the gateway's), a NAT with nftables (the private network masqueraded out of its public
//! address, the SIP port and an RTP range forwarded in) and a public network (the phone's),
//! whose packets to private addresses are dropped at the NAT as the Internet drops them.
//! Needs root, `ip` (iproute2) and `nft` (nftables); every namespace is removed on drop,
//! with the processes still in it.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The NAT's public address, where its forwarded ports are reached.
pub const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The phone's address on the public network.
pub const PHONE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// The three namespaces and the NAT's rules (see the module's doc).
pub struct NatNet {
    /// The gateway's namespace, on the private network.
    pub private: String,
    /// The NAT's.
    pub nat: String,
    /// The phone's, on the public network.
    pub public: String,
    /// The gateway's address on the private network (10.`n`.0.2/24; the NAT is .1).
    pub gateway: Ipv4Addr,
}

/// What the NAT counted, in packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatCounts {
    /// SIP from the public side forwarded to the gateway (its port or its replies).
    pub sip_in: u64,
    /// RTP and RTCP from the public side forwarded to the gateway.
    pub rtp_in: u64,
    /// SIP the public side sent to the private network itself: dropped.
    pub sip_lost: u64,
    /// Anything else the public side sent to the private network itself: dropped.
    pub media_lost: u64,
}

/// Runs `ip args`, panicking with its output if it fails.
fn ip(args: &[&str]) {
    run(
        Command::new("ip").args(args),
        &format!("ip {}", args.join(" ")),
    );
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (needs root, iproute2 and nftables)"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl NatNet {
    /// Makes the namespaces (named after `tag` and this process) with the private network
    /// 10.`n`.0.0/24, and the NAT forwarding UDP `sip_port` and `rtp` of its public address
    /// to the gateway.
    pub fn new(tag: &str, n: u8, sip_port: u16, rtp: RangeInclusive<u16>) -> NatNet {
        let name = |role: &str| format!("cv{}{tag}-{role}", std::process::id());
        let net = NatNet {
            private: name("priv"),
            nat: name("nat"),
            public: name("pub"),
            gateway: Ipv4Addr::new(10, n, 0, 2),
        };
        // From here on, a failure still removes what was made.
        for ns in [&net.private, &net.nat, &net.public] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let inside = format!("10.{n}.0.1");
        let private_net = format!("10.{n}.0.0/24");
        for (ns, peer, local, remote) in [
            (
                &net.private,
                "priv0",
                format!("{}/24", net.gateway),
                inside.clone(),
            ),
            (
                &net.public,
                "pub0",
                format!("{PHONE}/24"),
                NAT_PUBLIC.to_string(),
            ),
        ] {
            ip(&[
                "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns",
                &net.nat,
            ]);
            ip(&["-n", ns, "addr", "add", &local, "dev", "eth0"]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
            // The private side's way out is the NAT; the phone's is its way to the
            // Internet, which has no route to private addresses (the NAT drops them).
            ip(&["-n", ns, "route", "add", "default", "via", &remote]);
        }
        ip(&[
            "-n",
            &net.nat,
            "addr",
            "add",
            &format!("{inside}/24"),
            "dev",
            "priv0",
        ]);
        ip(&[
            "-n",
            &net.nat,
            "addr",
            "add",
            &format!("{NAT_PUBLIC}/24"),
            "dev",
            "pub0",
        ]);
        ip(&["-n", &net.nat, "link", "set", "priv0", "up"]);
        ip(&["-n", &net.nat, "link", "set", "pub0", "up"]);
        run(
            net.exec(&net.nat)
                .args(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]),
            "ip forwarding in the NAT",
        );
        let (first, last) = (rtp.start(), rtp.end());
        let gw = net.gateway;
        let rules = format!(
            "table ip nat {{
  counter sip_in {{}}
  counter rtp_in {{}}
  counter sip_lost {{}}
  counter media_lost {{}}
  chain inbound {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"pub0\" ip daddr {NAT_PUBLIC} udp dport {sip_port} dnat to {gw}:{sip_port}
    iifname \"pub0\" ip daddr {NAT_PUBLIC} udp dport {first}-{last} dnat to {gw}
  }}
  chain outbound {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"pub0\" ip saddr {private_net} masquerade
  }}
  chain through {{
    type filter hook forward priority filter; policy drop;
    iifname \"pub0\" ip daddr {private_net} ct status ! snat,dnat udp dport {sip_port} counter name \"sip_lost\" drop
    iifname \"pub0\" ip daddr {private_net} ct status ! snat,dnat counter name \"media_lost\" drop
    iifname \"pub0\" udp dport {first}-{last} counter name \"rtp_in\" accept
    iifname \"pub0\" udp dport {sip_port} counter name \"sip_in\" accept
    ct state established,related accept
    iifname \"priv0\" oifname \"pub0\" accept
  }}
}}
"
        );
        let file = std::env::temp_dir().join(format!("{}.nft", net.nat));
        std::fs::write(&file, rules).expect("write the NAT's rules");
        let loaded = net.exec(&net.nat).arg("nft").arg("-f").arg(&file).output();
        let _ = std::fs::remove_file(&file);
        let out = loaded.expect("nft runs (apt-get install nftables)");
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        net
    }

    /// A command run inside namespace `ns` (`ip netns exec`).
    pub fn exec(&self, ns: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]);
        c
    }

    /// What the NAT's counters say now.
    pub fn counts(&self) -> NatCounts {
        let out = run(
            self.exec(&self.nat).args(["nft", "-j", "list", "counters"]),
            "nft list counters",
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft's JSON");
        let mut c = NatCounts::default();
        for item in v["nftables"].as_array().into_iter().flatten() {
            let counter = &item["counter"];
            let packets = counter["packets"].as_u64().unwrap_or(0);
            match counter["name"].as_str() {
                Some("sip_in") => c.sip_in = packets,
                Some("rtp_in") => c.rtp_in = packets,
                Some("sip_lost") => c.sip_lost = packets,
                Some("media_lost") => c.media_lost = packets,
                _ => {}
            }
        }
        c
    }

    /// An HTTP request made from inside the private namespace with curl (bounded to 30 s):
    /// the status and the body. `bearer` may be empty.
    pub fn http(&self, url: &str, method: &str, bearer: &str, body: &str) -> (u16, String) {
        let mut cmd = self.exec(&self.private);
        cmd.args([
            "curl",
            "-sS",
            "-m",
            "30",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ])
        .args(["-H", "Content-Type: application/json"]);
        if !bearer.is_empty() {
            cmd.args(["-H", &format!("Authorization: Bearer {bearer}")]);
        }
        if !body.is_empty() {
            cmd.args(["--data-binary", body]);
        }
        let out = cmd
            .arg(url)
            .output()
            .expect("curl runs (apt-get install curl)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Waits (up to `bound`) until `url` answers 200 from inside the private namespace.
    pub fn wait_http(&self, url: &str, bound: Duration) {
        let start = Instant::now();
        while self.http(url, "GET", "", "").0 != 200 {
            assert!(start.elapsed() < bound, "{url} did not answer in {bound:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for NatNet {
    fn drop(&mut self) {
        for ns in [&self.private, &self.nat, &self.public] {
            // The processes the test started in it, if they are still there.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

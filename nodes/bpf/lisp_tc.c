// SPDX-License-Identifier: GPL-2.0
/* The xTR's kernel fast path for the RFC 9300 data header (issue 10, item 2).
 *
 * Two tc (clsact) ingress programs, loaded and fed by nodes/kernelpath.py:
 *
 *   lisp_encap   on the LAN interfaces: an IPv4 packet that the kernel would route into
 *                the TUN (a FIB lookup with the ingress interface, so the policy rules of
 *                the daemon apply) and whose destination has a map-cache entry with IPv4
 *                locators is encapsulated here (outer IPv4, UDP 4341 with the flow-hash
 *                source port, UDP checksum 0, LISP header with N, I (and L) bits, nonce,
 *                instance ID and LSB as the config map gives them) and redirected to the uplink with bpf_redirect_neigh.
 *   lisp_decap   on the uplink: a LISP data packet to our RLOC whose inner IPv4
 *                destination is one of our EIDs is decapsulated (inner TTL = min(inner,
 *                outer)) and handed to the kernel, which forwards it to the LAN.
 *
 * Inner IPv6 is handled the same way (hop limit, traffic class), over the IPv4 RLOC.
 * Whatever else (map-cache misses, negative or away entries, fragments, IP options,
 * too big for the path MTU, TTL expiring, odd lengths) is passed on unchanged
 * (PASS): the kernel routes it into the TUN or to the UDP socket, and the Python data
 * plane handles it exactly as without this program (ICMP for too-big packets included).
 * The same formulas as nodes/dataplane.py: the flow key (protocol, addresses, ports), its
 * CRC-32, outer_sport() and the map-cache's select_locator().
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV6
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)   /* kernel 6.3 */
#endif

#define LISP_DATA_PORT 4341
#define ENCAP_LEN 36            /* outer IPv4 20 + UDP 8 + LISP 8 */
#define MAX_LOCS 8
#define GOLDEN 0x9E3779B1u

#define ACT_PUNT 0
#define ACT_ENCAP 1
#define ACT_DELIVER 1

#define CFG_DECAP_KNOWN_ONLY 1

/* Not ours: on to the next program or filter, then the kernel's normal path (TCX_NEXT
 * under tcx, the next filter under a clsact qdisc). */
#define PASS TC_ACT_UNSPEC

/* counter indices: keep in step with COUNTERS in nodes/kernelpath.py */
enum {
	C_ENCAP = 0,            /* packets encapsulated (a GSO skb counts its segments) */
	C_DECAP,                /* packets decapsulated */
	C_PUNT_MISS,            /* encap: no map-cache entry (the ITR asks the mapping system) */
	C_PUNT_ENTRY,           /* encap: negative, away, IPv6 or no usable locator */
	C_PUNT_MTU,             /* encap: would not fit the path MTU (the TUN answers ICMP) */
	C_PUNT_TTL,             /* encap: TTL would expire */
	C_PUNT_FRAG,            /* fragments, both ways */
	C_PUNT_ODD,             /* IP options, odd lengths, GSO other than TCP, no route */
	C_PUNT_IPV6,            /* (unused: IPv6 inner packets are handled) */
	C_PUNT_DECAP_NOT_OURS,  /* decap: inner destination not a delivered EID of ours */
	C_PUNT_DECAP_IID,       /* decap: another instance ID */
	C_PUNT_DECAP_OTHER,     /* decap: GSO batch, known-RLOCs-only policy, short */
	C_ENCAP_SKBS,           /* skbs encapsulated */
	C_PUNT_REDIRECT,        /* redirect refused (the packet is dropped then) */
	C_PUNT_DECAP_LSB,       /* decap: Locator-Status-Bits the Python path has not seen */
	C_MAX = 16,
};

struct lisp_cfg {
	__u32 enabled;
	__u32 tun_ifindex;
	__u32 rloc4;            /* network byte order */
	__u32 iid;
	__u32 mtu;              /* outer path MTU */
	__u32 flags;
	__u32 hdr0;             /* the LISP header's words, host order, nonce 0 (N, L, I, */
	__u32 hdr1;             /* instance ID, LSB): nodes.lisp.data.header_words()     */
};

struct lpm_key {
	__u32 prefixlen;        /* 32 (instance ID) + prefix length */
	__u32 iid;              /* network byte order */
	__u32 addr;             /* network byte order */
};

struct mc_val {
	__u32 action;           /* ACT_PUNT or ACT_ENCAP */
	__u32 count;            /* candidates (1..MAX_LOCS) */
	__u32 total;            /* total weight */
	__u32 cum[MAX_LOCS];    /* cumulative weights */
	__u32 rloc[MAX_LOCS];   /* IPv4 RLOCs, network byte order */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lisp_cfg);
} lisp_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, struct mc_val);
} lisp_mc4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u32);
} lisp_own4 SEC(".maps");

struct lpm_key6 {
	__u32 prefixlen;        /* 32 (instance ID) + prefix length */
	__u32 iid;              /* network byte order */
	__u32 addr[4];          /* network byte order */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key6);
	__type(value, struct mc_val);
} lisp_mc6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key6);
	__type(value, __u32);
} lisp_own6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} lisp_counters SEC(".maps");

/* The Locator-Status-Bits (RFC 9300 5.3) each sending RLOC last sent, as the Python path
 * passed them on to the core: a packet whose bits differ (or whose sender is not here) is
 * punted, so the core hears every change; the daemon empties the map when the map-cache
 * changes (a new mapping starts without the old status). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);     /* the outer source address, network byte order */
	__type(value, __u32);   /* its bits: 8 with the I bit, 32 without */
} lisp_lsb4 SEC(".maps");

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&lisp_counters, &idx);
	if (v)
		*v += n;
}

static __always_inline int punt(__u32 idx)
{
	count(idx, 1);
	return PASS;
}

/* CRC-32 (IEEE, reflected, as zlib.crc32), table-driven: at most 13 bytes per packet. */
static const volatile __u32 crc_table[256] = {
	0x00000000, 0x77073096, 0xee0e612c, 0x990951ba, 0x076dc419, 0x706af48f,
	0xe963a535, 0x9e6495a3, 0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988,
	0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91, 0x1db71064, 0x6ab020f2,
	0xf3b97148, 0x84be41de, 0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
	0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec, 0x14015c4f, 0x63066cd9,
	0xfa0f3d63, 0x8d080df5, 0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172,
	0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b, 0x35b5a8fa, 0x42b2986c,
	0xdbbbc9d6, 0xacbcf940, 0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
	0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116, 0x21b4f4b5, 0x56b3c423,
	0xcfba9599, 0xb8bda50f, 0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924,
	0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d, 0x76dc4190, 0x01db7106,
	0x98d220bc, 0xefd5102a, 0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
	0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818, 0x7f6a0dbb, 0x086d3d2d,
	0x91646c97, 0xe6635c01, 0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e,
	0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457, 0x65b0d9c6, 0x12b7e950,
	0x8bbeb8ea, 0xfcb9887c, 0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
	0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2, 0x4adfa541, 0x3dd895d7,
	0xa4d1c46d, 0xd3d6f4fb, 0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0,
	0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9, 0x5005713c, 0x270241aa,
	0xbe0b1010, 0xc90c2086, 0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
	0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4, 0x59b33d17, 0x2eb40d81,
	0xb7bd5c3b, 0xc0ba6cad, 0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a,
	0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683, 0xe3630b12, 0x94643b84,
	0x0d6d6a3e, 0x7a6a5aa8, 0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
	0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe, 0xf762575d, 0x806567cb,
	0x196c3671, 0x6e6b06e7, 0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc,
	0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5, 0xd6d6a3e8, 0xa1d1937e,
	0x38d8c2c4, 0x4fdff252, 0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
	0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60, 0xdf60efc3, 0xa867df55,
	0x316e8eef, 0x4669be79, 0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236,
	0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f, 0xc5ba3bbe, 0xb2bd0b28,
	0x2bb45a92, 0x5cb36a04, 0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
	0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a, 0x9c0906a9, 0xeb0e363f,
	0x72076785, 0x05005713, 0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38,
	0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21, 0x86d3d2d4, 0xf1d4e242,
	0x68ddb3f8, 0x1fda836e, 0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
	0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c, 0x8f659eff, 0xf862ae69,
	0x616bffd3, 0x166ccf45, 0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2,
	0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db, 0xaed16a4a, 0xd9d65adc,
	0x40df0b66, 0x37d83bf0, 0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
	0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6, 0xbad03605, 0xcdd70693,
	0x54de5729, 0x23d967bf, 0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94,
	0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d
};

static __always_inline __u32 crc32_byte(__u32 crc, __u8 b)
{
	return crc_table[(crc ^ b) & 0xFF] ^ (crc >> 8);
}

static __always_inline __u32 crc32_u32(__u32 crc, __u32 be)   /* 4 bytes in wire order */
{
	const __u8 *p = (const __u8 *)&be;
	crc = crc32_byte(crc, p[0]);
	crc = crc32_byte(crc, p[1]);
	crc = crc32_byte(crc, p[2]);
	return crc32_byte(crc, p[3]);
}

static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xFFFF) + (sum >> 16);
	sum = (sum & 0xFFFF) + (sum >> 16);
	return (__u16)~sum;
}

struct outer {
	struct iphdr ip;
	struct udphdr udp;
	__u32 lisp0;
	__u32 lisp1;
} __attribute__((aligned(4)));
_Static_assert(sizeof(struct outer) == ENCAP_LEN, "outer header size");

/* select_locator: the CRC picks a point in [0, total weight) (Fibonacci hashing); then
 * the uplink toward the RLOC (main table, no policy rules). 0, or a counter to punt with. */
static __always_inline int pick_rloc(struct __sk_buff *skb, struct lisp_cfg *cfg,
				     struct mc_val *mc, __u32 crc, __u32 *rloc, __u32 *ifindex)
{
	__u32 idx = 0;
	if (mc->count > 1) {
		__u32 h = crc * GOLDEN;
		__u32 point = (__u32)(((__u64)h * mc->total) >> 32);
		idx = mc->count - 1;
#pragma unroll
		for (int i = MAX_LOCS - 1; i >= 0; i--)
			if (i < mc->count && mc->cum[i] > point)
				idx = i;
	}
	if (idx >= MAX_LOCS)
		return C_PUNT_ENTRY;
	*rloc = mc->rloc[idx];
	struct bpf_fib_lookup ofib = {};
	ofib.family = AF_INET;
	ofib.l4_protocol = IPPROTO_UDP;
	ofib.ipv4_src = cfg->rloc4;
	ofib.ipv4_dst = *rloc;
	ofib.ifindex = skb->ingress_ifindex;
	long rc = bpf_fib_lookup(skb, &ofib, sizeof(ofib), BPF_FIB_LOOKUP_DIRECT);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return C_PUNT_ODD;
	*ifindex = ofib.ifindex;
	return 0;
}

/* Outer IPv4 + UDP + LISP in front of the inner packet (`tot` bytes), to the uplink. */
static __always_inline int emit(struct __sk_buff *skb, struct lisp_cfg *cfg, __u32 rloc,
				__u32 out_ifindex, __u32 crc, __u32 tot, __u8 ttl, __u8 tos,
				__u32 segs)
{
	struct outer o = {};
	o.ip.version = 4;
	o.ip.ihl = 5;
	o.ip.tos = tos;
	o.ip.tot_len = bpf_htons((__u16)(tot + ENCAP_LEN));
	o.ip.id = 0;
	o.ip.frag_off = bpf_htons(0x4000);
	o.ip.ttl = ttl;
	o.ip.protocol = IPPROTO_UDP;
	o.ip.saddr = cfg->rloc4;
	o.ip.daddr = rloc;
	o.udp.source = bpf_htons(0xC000 | (((crc * GOLDEN) >> 18) & 0x3FFF));
	o.udp.dest = bpf_htons(LISP_DATA_PORT);
	o.udp.len = bpf_htons((__u16)(tot + 16));
	o.udp.check = 0;
	__u32 nonce = bpf_get_prandom_u32() & 0xFFFFFF;
	if (!nonce)
		nonce = 1;
	o.lisp0 = bpf_htonl(cfg->hdr0 | nonce);
	o.lisp1 = bpf_htonl(cfg->hdr1);
	__u32 sum = 0;
	__u16 *w = (__u16 *)&o;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	o.ip.check = csum_fold32(sum);

	if (bpf_skb_adjust_room(skb, ENCAP_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
				BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L2(8)))
		return punt(C_PUNT_REDIRECT);   /* (dropped: the inner TTL is down already) */
	__u16 ethertype = bpf_htons(ETH_P_IP);   /* (an IPv6 inner packet has an IPv4 outer) */
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &o, sizeof(o), 0) ||
	    bpf_skb_store_bytes(skb, 12, &ethertype, 2, 0))
		return punt(C_PUNT_REDIRECT);
	count(C_ENCAP, segs ? segs : 1);
	count(C_ENCAP_SKBS, 1);
	return bpf_redirect_neigh(out_ifindex, NULL, 0, 0);
}

static __always_inline __u32 crc32_addr6(__u32 crc, __u32 *a)
{
	crc = crc32_u32(crc, a[0]);
	crc = crc32_u32(crc, a[1]);
	crc = crc32_u32(crc, a[2]);
	return crc32_u32(crc, a[3]);
}

/* IPv6 inner packets: the same as IPv4, with the hop limit and the traffic class. */
static __always_inline int encap6(struct __sk_buff *skb, struct lisp_cfg *cfg)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	if ((void *)(ip6 + 1) > end)
		return PASS;
	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET6;
	fib.flowinfo = *(__u32 *)ip6 & bpf_htonl(0x0FFFFFFF);
	fib.l4_protocol = ip6->nexthdr;
	fib.tot_len = skb->gso_size ? 0 : bpf_ntohs(ip6->payload_len) + 40;
	__builtin_memcpy(fib.ipv6_src, &ip6->saddr, 16);
	__builtin_memcpy(fib.ipv6_dst, &ip6->daddr, 16);
	fib.ifindex = skb->ingress_ifindex;
	long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return punt(C_PUNT_MTU);
	if ((rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
	    || fib.ifindex != cfg->tun_ifindex)
		return PASS;
	__u8 proto = ip6->nexthdr;
	if (proto == 44)
		return punt(C_PUNT_FRAG);
	if (ip6->hop_limit <= 1)
		return punt(C_PUNT_TTL);
	__u32 tot = bpf_ntohs(ip6->payload_len) + 40;
	__u32 gso = skb->gso_size;
	if (!gso && tot != skb->len - ETH_HLEN)
		return punt(C_PUNT_ODD);
	__u32 crc = 0xFFFFFFFFu;
	crc = crc32_byte(crc, proto);
	crc = crc32_addr6(crc, (__u32 *)&ip6->saddr);
	crc = crc32_addr6(crc, (__u32 *)&ip6->daddr);
	__u32 l4len = 0;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == 132) {
		__u32 *ports = (void *)(ip6 + 1);
		if ((void *)(ports + 1) > end)
			return punt(C_PUNT_ODD);
		crc = crc32_u32(crc, *ports);
		if (proto == IPPROTO_TCP) {
			struct tcphdr *th = (void *)(ip6 + 1);
			if ((void *)(th + 1) > end)
				return punt(C_PUNT_ODD);
			l4len = th->doff * 4;
		}
	}
	crc = ~crc;
	if (gso) {
		if (proto != IPPROTO_TCP || !l4len)
			return punt(C_PUNT_ODD);
		if (40 + l4len + gso + ENCAP_LEN > cfg->mtu)
			return punt(C_PUNT_MTU);
	} else if (tot + ENCAP_LEN > cfg->mtu) {
		return punt(C_PUNT_MTU);
	}
	struct lpm_key6 key = { .prefixlen = 160, .iid = bpf_htonl(cfg->iid) };
	__builtin_memcpy(key.addr, &ip6->daddr, 16);
	struct mc_val *mc = bpf_map_lookup_elem(&lisp_mc6, &key);
	if (!mc)
		return punt(C_PUNT_MISS);
	if (mc->action != ACT_ENCAP || mc->count == 0 || mc->count > MAX_LOCS)
		return punt(C_PUNT_ENTRY);
	__u32 rloc = 0, out_ifindex = 0;
	int why = pick_rloc(skb, cfg, mc, crc, &rloc, &out_ifindex);
	if (why)
		return punt(why);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	ip6 = data + ETH_HLEN;
	if ((void *)(ip6 + 1) > end)
		return PASS;
	ip6->hop_limit -= 1;                 /* forwarded, as on its way into the TUN */
	__u8 ttl = ip6->hop_limit;
	__u8 tos = ((((__u8 *)ip6)[0] & 0x0F) << 4) | (((__u8 *)ip6)[1] >> 4);
	return emit(skb, cfg, rloc, out_ifindex, crc, tot, ttl, tos, gso ? skb->gso_segs : 1);
}

SEC("tc")
int lisp_encap(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct lisp_cfg *cfg = bpf_map_lookup_elem(&lisp_cfg, &zero);
	if (!cfg || !cfg->enabled)
		return PASS;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return encap6(skb, cfg);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return PASS;

	/* Would the kernel route it into the TUN (the LISP table, an away route)? */
	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET;
	fib.tos = ip->tos;
	fib.l4_protocol = ip->protocol;
	fib.tot_len = skb->gso_size ? 0 : bpf_ntohs(ip->tot_len);
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	fib.ifindex = skb->ingress_ifindex;
	long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return punt(C_PUNT_MTU);
	if ((rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
	    || fib.ifindex != cfg->tun_ifindex)
		return PASS;               /* not for LISP: routed as usual */

	if (ip->version != 4 || ip->ihl != 5)
		return punt(C_PUNT_ODD);
	if (ip->frag_off & bpf_htons(0x3FFF))
		return punt(C_PUNT_FRAG);
	if (ip->ttl <= 1)
		return punt(C_PUNT_TTL);
	__u32 tot = bpf_ntohs(ip->tot_len);
	__u32 gso = skb->gso_size;
	if (!gso && tot != skb->len - ETH_HLEN)
		return punt(C_PUNT_ODD);

	/* The flow key of nodes/dataplane.py flow_of: protocol, source, destination, ports. */
	__u8 proto = ip->protocol;
	__u32 crc = 0xFFFFFFFFu;
	crc = crc32_byte(crc, proto);
	crc = crc32_u32(crc, ip->saddr);
	crc = crc32_u32(crc, ip->daddr);
	__u32 l4len = 0;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == 132) {
		__u32 *ports = (void *)(ip + 1);
		if ((void *)(ports + 1) > end)
			return punt(C_PUNT_ODD);
		crc = crc32_u32(crc, *ports);
		if (proto == IPPROTO_TCP) {
			struct tcphdr *th = (void *)(ip + 1);
			if ((void *)(th + 1) > end)
				return punt(C_PUNT_ODD);
			l4len = th->doff * 4;
		}
	}
	crc = ~crc;

	/* Path MTU as the TUN does it: the TUN's MTU is the path MTU less 36 bytes. */
	if (gso) {
		if (proto != IPPROTO_TCP || !l4len)
			return punt(C_PUNT_ODD);
		if (20 + l4len + gso + ENCAP_LEN > cfg->mtu)
			return punt(C_PUNT_MTU);
	} else if (tot + ENCAP_LEN > cfg->mtu) {
		return punt(C_PUNT_MTU);
	}

	struct lpm_key key = { .prefixlen = 64, .iid = bpf_htonl(cfg->iid), .addr = ip->daddr };
	struct mc_val *mc = bpf_map_lookup_elem(&lisp_mc4, &key);
	if (!mc)
		return punt(C_PUNT_MISS);
	if (mc->action != ACT_ENCAP || mc->count == 0 || mc->count > MAX_LOCS)
		return punt(C_PUNT_ENTRY);

	__u32 rloc = 0, out_ifindex = 0;
	int why = pick_rloc(skb, cfg, mc, crc, &rloc, &out_ifindex);
	if (why)
		return punt(why);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > end)
		return PASS;

	/* The inner packet is forwarded: its TTL goes down by one (as on its way into the
	 * TUN), incremental checksum as ip_decrease_ttl. */
	__u32 check = ip->check;
	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xFFFF));
	ip->ttl -= 1;
	return emit(skb, cfg, rloc, out_ifindex, crc, tot, ip->ttl, ip->tos,
		    gso ? skb->gso_segs : 1);
}

/* An IPv6 inner packet (its LISP header checked): ours, so decapsulated, or PASS. */
static __always_inline int decap6(struct __sk_buff *skb, struct lisp_cfg *cfg, __u8 outer_ttl)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ipv6hdr *in = data + ETH_HLEN + ENCAP_LEN;
	if ((void *)(in + 1) > end)
		return punt(C_PUNT_DECAP_OTHER);
	if (bpf_ntohs(in->payload_len) + 40 + ENCAP_LEN + ETH_HLEN != skb->len)
		return punt(C_PUNT_DECAP_OTHER);
	struct lpm_key6 key = { .prefixlen = 160, .iid = bpf_htonl(cfg->iid) };
	__builtin_memcpy(key.addr, &in->daddr, 16);
	__u32 *own = bpf_map_lookup_elem(&lisp_own6, &key);
	if (!own || *own != ACT_DELIVER)
		return punt(C_PUNT_DECAP_NOT_OURS);
	if (outer_ttl < in->hop_limit)
		in->hop_limit = outer_ttl;          /* min(inner, outer); no checksum in IPv6 */
	if (bpf_skb_adjust_room(skb, -ENCAP_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_DECAP_L3_IPV6))
		return punt(C_PUNT_DECAP_OTHER);
	__u16 ethertype = bpf_htons(ETH_P_IPV6);
	if (bpf_skb_store_bytes(skb, 12, &ethertype, 2, 0))
		return punt(C_PUNT_DECAP_OTHER);
	count(C_DECAP, 1);
	return PASS;
}

SEC("tc")
int lisp_decap(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct lisp_cfg *cfg = bpf_map_lookup_elem(&lisp_cfg, &zero);
	if (!cfg || !cfg->enabled)
		return PASS;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return PASS;
	if (ip->protocol != IPPROTO_UDP || ip->daddr != cfg->rloc4)
		return PASS;
	if (ip->frag_off & bpf_htons(0x3FFF))
		return punt(C_PUNT_FRAG);
	if (ip->ihl != 5)
		return PASS;
	struct udphdr *uh = (void *)(ip + 1);
	if ((void *)(uh + 1) > end || uh->dest != bpf_htons(LISP_DATA_PORT))
		return PASS;
	if (skb->gso_size || (cfg->flags & CFG_DECAP_KNOWN_ONLY))
		return punt(C_PUNT_DECAP_OTHER);
	__u8 *lisp = (void *)(uh + 1);
	struct iphdr *in = (void *)(lisp + 8);
	if ((void *)(in + 1) > end)
		return punt(C_PUNT_DECAP_OTHER);
	if (lisp[0] & 0x08) {
		__u32 iid = ((__u32)lisp[4] << 16) | ((__u32)lisp[5] << 8) | lisp[6];
		if (iid != (cfg->iid & 0xFFFFFF))
			return punt(C_PUNT_DECAP_IID);
	}
	if (lisp[0] & 0x40) {      /* L: the sending site's Locator-Status-Bits */
		__u32 lsb = (lisp[0] & 0x08) ? (__u32)lisp[7] :
			((__u32)lisp[4] << 24) | ((__u32)lisp[5] << 16) |
			((__u32)lisp[6] << 8) | lisp[7];
		__u32 src = ip->saddr;
		__u32 *seen = bpf_map_lookup_elem(&lisp_lsb4, &src);
		if (!seen || *seen != lsb)
			return punt(C_PUNT_DECAP_LSB);
	}
	if (in->version == 6)
		return decap6(skb, cfg, ip->ttl);
	if (in->version != 4 || in->ihl < 5)
		return punt(C_PUNT_DECAP_OTHER);
	if (bpf_ntohs(in->tot_len) + ENCAP_LEN + ETH_HLEN != skb->len ||
	    bpf_ntohs(ip->tot_len) + ETH_HLEN != skb->len)
		return punt(C_PUNT_DECAP_OTHER);
	struct lpm_key key = { .prefixlen = 64, .iid = bpf_htonl(cfg->iid), .addr = in->daddr };
	__u32 *own = bpf_map_lookup_elem(&lisp_own4, &key);
	if (!own || *own != ACT_DELIVER)
		return punt(C_PUNT_DECAP_NOT_OURS);
	/* inner TTL = min(inner, outer), RFC 1624 over the TTL/protocol word */
	if (ip->ttl < in->ttl) {
		__u16 old = bpf_htons(((__u16)in->ttl << 8) | in->protocol);
		__u16 new = bpf_htons(((__u16)ip->ttl << 8) | in->protocol);
		__u32 s = (__u16)~in->check;
		s += (__u16)~old;
		s += new;
		in->ttl = ip->ttl;
		in->check = csum_fold32(s);
	}
	if (bpf_skb_adjust_room(skb, -ENCAP_LEN, BPF_ADJ_ROOM_MAC, 0))
		return punt(C_PUNT_DECAP_OTHER);
	count(C_DECAP, 1);
	return PASS;                       /* the kernel forwards the inner packet */
}

char _license[] SEC("license") = "GPL";

/* ovs_ct_bench: times Open vSwitch's userspace connection tracker
 * (conntrack_execute() from lib/conntrack.c) on the packets of a pcap file,
 * the same way `ctrack bench --pcap FILE --setup K` times ctrack.
 *
 * Part of ctrack (MIT OR Apache-2.0).  This file only calls OVS's public
 * library API; it is built against an OVS build tree by benches/ovs/run.sh.
 *
 *   ovs_ct_bench [--setup K] [--batch B] [--verdicts] [--csum-offload]
 *                [--hot] [--no-warm-up] [--max-conns N] FILE.pcap
 *
 * 1. Every packet of FILE (Ethernet pcap) is read into memory as a
 *    dp_packet; flow_extract() sets its L2/L3/L4 offsets, as the datapath's
 *    miniflow_extract() has done by the time a ct() action runs, and its
 *    metadata is cleared (no cached connection, no ct_state).
 * 2. The packets are cut into bursts of up to B (default 32, OVS's
 *    NETDEV_MAX_BURST) consecutive packets of one EtherType; this happens
 *    before any timing.
 * 3. Unless --no-warm-up, as `ctrack bench --pcap` does: copies of the
 *    capture's first WARM_UP packets (fewer if they pass WARM_UP_BYTES), in
 *    bursts cut the same way, go through a scratch tracker, which is then
 *    destroyed, so that the timed pass does not fetch OVS's code from memory
 *    as it first meets it.  That replay is timed and printed as `warm-up
 *    packets K seconds S mpps M`: the first pass of a fresh process.  Then
 *    the first K packets (the workload's setup: handshakes, first
 *    exchanges), in bursts of their own, go through conntrack_execute()
 *    untimed, into the tracker that is timed.
 * 4. The remaining packets go through conntrack_execute() timed, burst by
 *    burst: commit (like a firewall's ct(commit)), zone 0, no force, no
 *    mark/label, no NAT, no ALG helper, `now` read once per burst with
 *    time_msec() as the datapath does once per receive batch.
 * 5. Prints `packets N seconds S mpps M` last.  With --verdicts, first
 *    prints `<index> <class> <ovs ct_state flags>` for every packet (index
 *    from 0, as `ctrack replay --verdicts` numbers them), where class is
 *    new|established|related followed by ,orig or ,reply, or invalid, or
 *    untracked.
 *
 * --hot times each burst on its own, after reading every cache line of its
 * packets (struct dp_packet and frame bytes) untimed, so conntrack finds
 * them in cache as it would right after the datapath's miniflow_extract()
 * and flow lookup; the two clock reads per burst (a few tens of ns) are
 * counted against OVS.  Without it, one clock read brackets the whole
 * timed loop and packets come from memory, as ctrack's bench reads them.
 *
 * --csum-offload marks every packet as if the NIC had verified its IP and
 * L4 checksums (DP_PACKET_OL_RX_{IP,L4}_CKSUM_GOOD), so conntrack skips its
 * software checksum validation.  Without it OVS validates both checksums in
 * software, as it does for packets from a NIC without receive offloads.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conntrack.h"
#include "dp-packet.h"
#include "fatal-signal.h"
#include "flow.h"
#include "netdev.h"
#include "openvswitch/vlog.h"
#include "packets.h"
#include "pcap-file.h"
#include "timeval.h"
#include "util.h"

struct burst {
    struct dp_packet_batch batch;
    ovs_be16 dl_type;
};

/* Packets and bytes of frames the warm-up replays at most (ctrack's bench's
 * WARM_UP and WARM_UP_BYTES). */
#define WARM_UP 4096
#define WARM_UP_BYTES (16 << 20)

static double
mono_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Replays copies of the first 'k' packets ('setup' of the capture's are setup
 * packets) through a scratch tracker, in bursts cut as the bench cuts them;
 * returns the seconds that took. */
static double
warm_up(struct dp_packet **pkts, const ovs_be16 *dl_types, size_t setup,
        size_t k, size_t batch_size, uint32_t max_conns)
{
    struct conntrack *ct = conntrack_init();
    size_t n_bursts = 0;
    struct burst *bursts = xmalloc((k + 1) * sizeof *bursts);

    conntrack_set_maxconns(ct, max_conns);
    for (size_t i = 0; i < k;) {
        struct burst *b = &bursts[n_bursts++];
        size_t end = i < setup && setup < k ? setup : k;

        dp_packet_batch_init(&b->batch);
        b->dl_type = dl_types[i];
        while (i < end && b->batch.count < batch_size
               && dl_types[i] == b->dl_type) {
            struct dp_packet *c = dp_packet_clone(pkts[i++]);

            pkt_metadata_init(&c->md, 0);
            dp_packet_batch_add(&b->batch, c);
        }
    }
    double start = mono_seconds();
    for (size_t i = 0; i < n_bursts; i++) {
        conntrack_execute(ct, &bursts[i].batch, bursts[i].dl_type, false, true,
                          0, NULL, NULL, 0, 0, NULL, NULL, time_msec(), 0);
    }
    double secs = mono_seconds() - start;
    for (size_t i = 0; i < n_bursts; i++) {
        dp_packet_delete_batch(&bursts[i].batch, true);
    }
    free(bursts);
    conntrack_destroy(ct);
    return secs;
}

/* Reads every cache line of a burst's packets: metadata and frame bytes. */
static void
warm(const struct dp_packet_batch *batch)
{
    static volatile uint64_t sink;
    uint64_t sum = 0;

    for (size_t i = 0; i < batch->count; i++) {
        const struct dp_packet *p = batch->packets[i];
        const uint8_t *m = (const uint8_t *) p;
        const uint8_t *d = dp_packet_data(p);

        size_t size = dp_packet_size(p);

        for (size_t off = 0; off < sizeof *p; off += 64) {
            sum += m[off];
        }
        sum += m[sizeof *p - 1];
        for (size_t off = 0; off < size; off += 64) {
            sum += d[off];
        }
        sum += size ? d[size - 1] : 0;
    }
    sink += sum;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: ovs_ct_bench [--setup K] [--batch B] [--verdicts] "
            "[--csum-offload] [--hot] [--no-warm-up] [--max-conns N] "
            "FILE.pcap\n");
    exit(2);
}

static unsigned long long
parse_count(const char *opt, const char *s)
{
    char *end;
    unsigned long long v;

    if (!s) {
        usage();
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end) {
        fprintf(stderr, "ovs_ct_bench: %s needs a number, not '%s'\n", opt, s);
        exit(2);
    }
    return v;
}

static const char *
state_class(uint8_t st, char *buf, size_t len)
{
    const char *dir = st & CS_REPLY_DIR ? "reply" : "orig";

    if (st & CS_INVALID) {
        return "invalid";
    } else if (!(st & CS_TRACKED)) {
        return "untracked";
    } else if (st & CS_RELATED) {
        snprintf(buf, len, "related,%s", dir);
    } else if (st & CS_ESTABLISHED) {
        snprintf(buf, len, "established,%s", dir);
    } else if (st & CS_NEW) {
        snprintf(buf, len, "new,%s", dir);
    } else {
        return "tracked-without-state";
    }
    return buf;
}

static void
state_flags(uint8_t st, char *buf, size_t len)
{
    static const char *names[8] = {
        "new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"
    };
    size_t at = 0;

    buf[0] = '\0';
    for (int b = 0; b < 8; b++) {
        if (st & (1u << b) && at < len) {
            at += snprintf(buf + at, len - at, "%s%s", at ? "|" : "",
                           names[b]);
        }
    }
    if (!at) {
        snprintf(buf, len, "-");
    }
}

int
main(int argc, char *argv[])
{
    unsigned long long setup = 0, batch_size = NETDEV_MAX_BURST;
    unsigned long long max_conns = 0;
    bool verdicts = false, csum_offload = false, hot = false, warm_up_first = true;
    const char *file = NULL;

    set_program_name(argv[0]);
    vlog_set_levels(NULL, VLF_ANY_DESTINATION, VLL_WARN);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (!strcmp(a, "--setup")) {
            setup = parse_count(a, argv[++i]);
        } else if (!strcmp(a, "--batch")) {
            batch_size = parse_count(a, argv[++i]);
        } else if (!strcmp(a, "--max-conns")) {
            max_conns = parse_count(a, argv[++i]);
        } else if (!strcmp(a, "--verdicts")) {
            verdicts = true;
        } else if (!strcmp(a, "--hot")) {
            hot = true;
        } else if (!strcmp(a, "--no-warm-up")) {
            warm_up_first = false;
        } else if (!strcmp(a, "--csum-offload")) {
            csum_offload = true;
        } else if (a[0] == '-' || file) {
            usage();
        } else {
            file = a;
        }
    }
    if (!file) {
        usage();
    }
    if (batch_size < 1 || batch_size > NETDEV_MAX_BURST) {
        fprintf(stderr, "ovs_ct_bench: --batch must be 1 to %d\n",
                NETDEV_MAX_BURST);
        return 2;
    }

    fatal_signal_init();

    /* 1. Load the whole capture. */
    struct pcap_file *pcap = ovs_pcap_open(file, "rb");
    if (!pcap) {
        fprintf(stderr, "ovs_ct_bench: %s: cannot open as pcap\n", file);
        return 1;
    }
    size_t n = 0, cap = 1 << 16;
    struct dp_packet **pkts = xmalloc(cap * sizeof *pkts);
    ovs_be16 *dl_types = xmalloc(cap * sizeof *dl_types);
    for (;;) {
        struct dp_packet *p;
        int err = ovs_pcap_read(pcap, &p, NULL);

        if (err == EOF) {
            break;
        } else if (err) {
            fprintf(stderr, "ovs_ct_bench: %s: %s\n", file,
                    ovs_retval_to_string(err));
            return 1;
        }
        if (n == cap) {
            cap *= 2;
            pkts = xrealloc(pkts, cap * sizeof *pkts);
            dl_types = xrealloc(dl_types, cap * sizeof *dl_types);
        }
        struct flow flow;
        flow_extract(p, &flow);          /* Sets l2_5/l3/l4 offsets. */
        pkt_metadata_init(&p->md, 0);    /* No cached conn, no ct_state. */
        if (csum_offload) {
            *dp_packet_ol_flags_ptr(p) |= DP_PACKET_OL_RX_IP_CKSUM_GOOD
                                          | DP_PACKET_OL_RX_L4_CKSUM_GOOD;
        }
        dl_types[n] = flow.dl_type;
        pkts[n++] = p;
    }
    ovs_pcap_close(pcap);
    if (setup >= n) {
        fprintf(stderr, "ovs_ct_bench: --setup %llu leaves none of the %"
                PRIuSIZE" packets to time\n", setup, n);
        return 1;
    }

    /* 2. Bursts: setup packets and timed packets never share one, and a
     * change of ethertype ends one (so a capture that interleaves families
     * or non-IP frames can need up to one burst per packet). */
    struct burst *bursts = xmalloc((n + 1) * sizeof *bursts);
    size_t n_bursts = 0, n_setup_bursts = 0;
    for (size_t i = 0; i < n;) {
        struct burst *b = &bursts[n_bursts++];
        size_t end = i < setup ? setup : n;

        dp_packet_batch_init(&b->batch);
        b->dl_type = dl_types[i];
        while (i < end && b->batch.count < batch_size
               && dl_types[i] == b->dl_type) {
            dp_packet_batch_add(&b->batch, pkts[i++]);
        }
        if (i <= setup) {
            n_setup_bursts = n_bursts;
        }
    }

    struct conntrack *ct = conntrack_init();
    /* Room for every packet to open a connection (OVS's default limit is
     * 3,000,000); ctrack's bench raises nf_conntrack_max the same way. */
    uint32_t limit;
    conntrack_get_maxconns(ct, &limit);
    if (!max_conns) {
        max_conns = MAX(limit, n);
    }
    conntrack_set_maxconns(ct, max_conns > UINT32_MAX ? UINT32_MAX
                                                      : max_conns);

    /* 3. Warm-up, then the setup, untimed. */
    size_t warmed = 0;
    double warm_secs = 0;
    if (warm_up_first) {
        size_t bytes = 0;

        /* The first packet always (a record may be larger than the bound). */
        while (warmed < n && warmed < WARM_UP
               && ((bytes += dp_packet_size(pkts[warmed])) <= WARM_UP_BYTES
                   || warmed == 0)) {
            warmed++;
        }
        warm_secs = warm_up(pkts, dl_types, setup, warmed, batch_size,
                            max_conns > UINT32_MAX ? UINT32_MAX : max_conns);
    }

    for (size_t i = 0; i < n_setup_bursts; i++) {
        conntrack_execute(ct, &bursts[i].batch, bursts[i].dl_type, false,
                          true, 0, NULL, NULL, 0, 0, NULL, NULL, time_msec(),
                          0);
    }

    /* 4. Timed. */
    double secs = 0;
    if (!hot) {
        double start = mono_seconds();
        for (size_t i = n_setup_bursts; i < n_bursts; i++) {
            conntrack_execute(ct, &bursts[i].batch, bursts[i].dl_type, false,
                              true, 0, NULL, NULL, 0, 0, NULL, NULL,
                              time_msec(), 0);
        }
        secs = mono_seconds() - start;
    } else {
        for (size_t i = n_setup_bursts; i < n_bursts; i++) {
            warm(&bursts[i].batch);
            double start = mono_seconds();
            conntrack_execute(ct, &bursts[i].batch, bursts[i].dl_type, false,
                              true, 0, NULL, NULL, 0, 0, NULL, NULL,
                              time_msec(), 0);
            secs += mono_seconds() - start;
        }
    }

    /* 5. Report. */
    size_t counts[8] = { 0 };
    for (size_t i = 0; i < n; i++) {
        uint8_t st = pkts[i]->md.ct_state;
        char cls[32], flags[64];

        counts[st & CS_INVALID ? 4 : !(st & CS_TRACKED) ? 5
               : st & CS_RELATED ? 2 : st & CS_ESTABLISHED ? 1
               : st & CS_NEW ? 0 : 6]++;
        if (verdicts) {
            state_flags(st, flags, sizeof flags);
            printf("%"PRIuSIZE" %s %s\n", i,
                   state_class(st, cls, sizeof cls), flags);
        }
    }
    uint32_t nconns = 0;
    conntrack_get_nconns(ct, &nconns);
    size_t timed = n - setup;
    printf("pcap %s setup %llu batch %llu csum-offload %s hot %s\n", file,
           setup, batch_size, csum_offload ? "yes" : "no", hot ? "yes" : "no");
    if (warmed) {
        printf("warm-up packets %"PRIuSIZE" seconds %.6f mpps %.3f\n", warmed,
               warm_secs, warmed / warm_secs / 1e6);
    }
    printf("states new %"PRIuSIZE" established %"PRIuSIZE" related %"PRIuSIZE
           " invalid %"PRIuSIZE" untracked %"PRIuSIZE" other %"PRIuSIZE"\n",
           counts[0], counts[1], counts[2], counts[4], counts[5], counts[6]);
    printf("entries %"PRIu32"\n", nconns);
    printf("packets %"PRIuSIZE" seconds %.6f mpps %.3f\n", timed, secs,
           timed / secs / 1e6);
    fflush(stdout);
    /* The table and packets die with the process: conntrack_destroy() on
     * millions of connections would only add seconds to every run. */
    _exit(0);
}

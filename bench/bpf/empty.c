// An XDP program that only returns XDP_PASS: what BPF_PROG_TEST_RUN costs
// per repetition with no work at all, subtracted in xdp_bench's "net" column.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int empty_xdp(struct xdp_md *ctx) {
  (void)ctx;
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

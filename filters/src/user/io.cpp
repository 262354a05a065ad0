// Placeholder until the implementation lands.
#include "factories.h"

namespace srl::filters::user {
std::unique_ptr<UserSource> make_pcapin(const UserFilterConfig& config) {
  config_error(config, "no userspace implementation yet");
}
std::unique_ptr<UserFilter> make_pcap_sink(const UserFilterConfig& config) {
  config_error(config, "no userspace implementation yet");
}
std::unique_ptr<UserFilter> make_print_sink(const UserFilterConfig& config) {
  config_error(config, "no userspace implementation yet");
}
std::unique_ptr<UserFilter> make_file_sink(const UserFilterConfig& config) {
  config_error(config, "no userspace implementation yet");
}
std::unique_ptr<UserFilter> make_fifo_sink(const UserFilterConfig& config) {
  config_error(config, "no userspace implementation yet");
}
}  // namespace srl::filters::user

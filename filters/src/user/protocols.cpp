// Placeholder until the implementation lands.
#include "factories.h"

namespace srl::filters::user {
std::unique_ptr<UserFilter> make_http(const UserFilterConfig& config) {
  config_error(config, "no userspace implementation yet");
}
std::unique_ptr<UserFilter> make_ssh(const UserFilterConfig& config) {
  config_error(config, "no userspace implementation yet");
}
std::unique_ptr<UserFilter> make_rtsp(const UserFilterConfig& config) {
  config_error(config, "no userspace implementation yet");
}
std::unique_ptr<UserFilter> make_dns(const UserFilterConfig& config) {
  config_error(config, "no userspace implementation yet");
}
std::unique_ptr<UserFilter> make_tls(const UserFilterConfig& config) {
  config_error(config, "no userspace implementation yet");
}
}  // namespace srl::filters::user

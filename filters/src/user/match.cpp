// Placeholder until the implementation lands.
#include "factories.h"

namespace srl::filters::user {
std::unique_ptr<UserFilter> make_match(const UserFilterConfig& config) {
  config_error(config, "no userspace implementation yet");
}
}  // namespace srl::filters::user

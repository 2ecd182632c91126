#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace sluice {

bool init_logging(std::string_view level, std::string* error) {
  const spdlog::level::level_enum lv = spdlog::level::from_str(std::string(level));
  // from_str() maps an unknown name to "off": tell them apart.
  if (lv == spdlog::level::off && level != "off") {
    if (error) {
      *error = "unknown log level '" + std::string(level) +
               "' (trace|debug|info|warn|error|critical|off)";
    }
    return false;
  }
  // Idempotent: a second call only changes the level.
  auto logger = spdlog::get("sluice");
  if (!logger) logger = spdlog::stderr_color_mt("sluice");
  spdlog::set_default_logger(logger);
  spdlog::set_level(lv);
  return true;
}

}  // namespace sluice

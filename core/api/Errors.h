#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace flowscope::core {

// A name the user typed (model, path, solver, schedule, ...) that FlowScope does not know.
// The message lists the valid names so the user can correct the request.
class UnknownNameError : public std::invalid_argument {
public:
    UnknownNameError(std::string_view kind, std::string_view given, const std::vector<std::string>& valid);
};

// A request that is well-formed but asks for something outside the allowed range.
class InvalidRequestError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// The run was cancelled through its cancellation flag.
class CancelledError : public std::runtime_error {
public:
    CancelledError() : std::runtime_error("cancelled") {}
};

std::string joinNames(const std::vector<std::string>& names, std::string_view separator = ", ");

}  // namespace flowscope::core

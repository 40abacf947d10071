#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace flowscope::core {

// A small streaming JSON writer (the CLI's --json output, the settings chunk): compact, keys in
// the order written.
// Non-finite numbers are written as null, as JSON has no NaN or Infinity.
class JsonWriter {
public:
    void beginObject();
    void endObject();
    void beginArray();
    void endArray();
    void key(const std::string& name);
    // The members of a compact JSON object's text ("{...}", as another writer made it), as fields
    // of the object being written.
    void members(std::string_view objectText);

    void value(const std::string& text);
    void value(const char* text) { value(std::string(text)); }
    void value(double number);
    void value(int number) { value(static_cast<long long>(number)); }
    void value(long long number);
    void value(bool flag);

    template <typename T>
    void field(const std::string& name, const T& v) {
        key(name);
        value(v);
    }
    template <typename T>
    void field(const std::string& name, const std::vector<T>& items) {
        key(name);
        beginArray();
        for (const auto& item : items) value(static_cast<std::conditional_t<std::is_integral_v<T>, long long, T>>(item));
        endArray();
    }

    const std::string& str() const { return m_out; }

private:
    void separate();
    std::string m_out;
    bool m_needComma = false;
};

}  // namespace flowscope::core

#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flowscope::app {

// A small streaming JSON writer for the CLI's --json output (one object, no pretty printing).
// Non-finite numbers are written as null, as JSON has no NaN or Infinity.
class JsonWriter {
public:
    void beginObject();
    void endObject();
    void beginArray();
    void endArray();
    void key(const std::string& name);

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

}  // namespace flowscope::app

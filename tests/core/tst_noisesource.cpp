// Seeds as DESIGN.md fixes them: sample k draws torch::randn({C, H, W}) in float32 from a CPU
// generator seeded with seed + k, so one sample of a batch can be regenerated alone.
#include <ATen/CPUGeneratorImpl.h>
#include <QtTest/QtTest>
#include <torch/torch.h>

#include "core/sampling/NoiseSource.h"

using namespace flowscope::core;

class TestNoiseSource : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void sampleKUsesSeedPlusK();
    void oneSampleRegeneratesAlone();
    void laterDrawsContinueTheSameGenerators();
};

void TestNoiseSource::sampleKUsesSeedPlusK() {
    NoiseSource noise({1, 28, 28}, 42, 3);
    const torch::Tensor batch = noise.draw();
    QCOMPARE(batch.sizes().vec(), (std::vector<int64_t>{3, 1, 28, 28}));
    QCOMPARE(batch.scalar_type(), torch::kFloat32);
    for (int k = 0; k < 3; ++k) {
        at::Generator generator = at::detail::createCPUGenerator(42 + k);
        const torch::Tensor expected = torch::randn({1, 28, 28}, generator, torch::kFloat32);
        QVERIFY(torch::equal(batch[k], expected));
    }
    QVERIFY(!torch::equal(batch[0], batch[1]));
}

void TestNoiseSource::oneSampleRegeneratesAlone() {
    NoiseSource batch({2}, 7, 16);
    NoiseSource single({2}, 7 + 11, 1);
    QVERIFY(torch::equal(batch.draw()[11], single.draw()[0]));
}

void TestNoiseSource::laterDrawsContinueTheSameGenerators() {
    NoiseSource noise({4}, 3, 2);
    const auto first = noise.draw();
    const auto second = noise.draw();
    at::Generator generator = at::detail::createCPUGenerator(4);
    const auto a = torch::randn({4}, generator, torch::kFloat32);
    const auto b = torch::randn({4}, generator, torch::kFloat32);
    QVERIFY(torch::equal(first[1], a));
    QVERIFY(torch::equal(second[1], b));
}

QTEST_GUILESS_MAIN(TestNoiseSource)
#include "tst_noisesource.moc"

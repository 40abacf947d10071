#include "ui/StartBar.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QPixmap>
#include <QSlider>
#include <QToolButton>

namespace flowscope::ui {
namespace {

constexpr int kStrengthSteps = 100;
constexpr int kThumbnailSide = 22;

}  // namespace

StartBar::StartBar(QWidget* parent) : QWidget(parent) {
    m_thumbnail = new QLabel(this);
    m_thumbnail->setFixedSize(kThumbnailSide, kThumbnailSide);
    m_thumbnail->setScaledContents(true);
    m_label = new QLabel(this);
    m_label->setTextFormat(Qt::PlainText);
    m_label->setMinimumWidth(24);
    m_strength = new QSlider(Qt::Horizontal, this);
    m_strength->setRange(0, kStrengthSteps);
    m_strength->setValue(75);
    m_strength->setMinimumWidth(24);
    m_strength->setToolTip(tr("Strength: how much of the image is redone (0 keeps it, 1 samples anew from the "
                              "seed's noise). The image is noised to t = 1 - strength along the lane's path."));
    m_value = new QLabel(this);
    m_clear = new QToolButton(this);
    m_clear->setText(QStringLiteral("✕"));
    m_clear->setAutoRaise(true);
    m_clear->setToolTip(tr("Start from the seed's noise again"));
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_thumbnail);
    layout->addWidget(m_label, 1);
    layout->addWidget(m_strength, 1);
    layout->addWidget(m_value);
    layout->addWidget(m_clear);
    connect(m_strength, &QSlider::valueChanged, this, [this] {
        m_value->setText(QString::number(strength(), 'f', 2));
        Q_EMIT strengthChanged();
    });
    connect(m_clear, &QToolButton::clicked, this, &StartBar::clearRequested);
    m_value->setText(QString::number(strength(), 'f', 2));
    showNoise();
}

void StartBar::showImage(const QString& name, const QImage& thumbnail) {
    m_thumbnail->setPixmap(QPixmap::fromImage(thumbnail));
    m_thumbnail->show();
    m_label->setText(tr("from %1").arg(name));
    m_label->setToolTip(tr("Image to image: this image, noised to t = 1 - strength, then solved by the lane"));
    m_strength->show();
    m_value->show();
    show();
}

void StartBar::showFork(const QString& text) {
    m_thumbnail->hide();
    m_label->setText(text);
    m_label->setToolTip(text);
    m_strength->hide();
    m_value->hide();
    show();
}

void StartBar::showNoise() {
    m_label->clear();
    hide();
}

double StartBar::strength() const { return double(m_strength->value()) / kStrengthSteps; }

void StartBar::setStrength(double strength) { m_strength->setValue(qRound(strength * kStrengthSteps)); }

QString StartBar::text() const { return m_label->text(); }

}  // namespace flowscope::ui

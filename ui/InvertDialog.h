#pragma once

#include <QDialog>
#include <QMap>
#include <QVector>

#include "ui/LaneFrame.h"

class QChart;
class QChartView;
class QLabel;

namespace flowscope::ui {

// Inversion of one sample (a lane's focused sample, or a dropped image): the data, the noise the
// ODE solved backwards recovers, the round trip forwards again, a heat map of |data - round
// trip|, the figures (round-trip RMSE, NFE, how Gaussian the noise is), and a chart of the round
// trip's error against steps for the lanes' solvers (a round-trip sweep).
class InvertDialog : public QDialog {
    Q_OBJECT

public:
    explicit InvertDialog(QWidget* parent = nullptr);

    // A new inversion `inversionId` and its sweep `sweepId` of `solvers` began: what is shown goes.
    void begin(const QString& title, quint64 inversionId, quint64 sweepId, const QStringList& solvers);
    void showInversion(quint64 id, const InversionView& view);
    void failInversion(quint64 id, const QString& message);
    void addCell(quint64 sweepId, const SweepCell& cell);

    quint64 inversionId() const { return m_inversionId; }
    bool hasInversion() const { return m_hasInversion; }
    QString figuresText() const;
    // The chart's points per solver: (steps, round-trip RMSE).
    const QMap<QString, QVector<QPointF>>& curves() const { return m_curves; }
    QChartView* chartView() const { return m_chartView; }

private:
    void redrawChart();

    QLabel* m_data;
    QLabel* m_noise;
    QLabel* m_roundtrip;
    QLabel* m_difference;
    QLabel* m_figures;
    QChartView* m_chartView;
    quint64 m_inversionId = 0;
    quint64 m_sweepId = 0;
    bool m_hasInversion = false;
    QMap<QString, QVector<QPointF>> m_curves;
};

}  // namespace flowscope::ui

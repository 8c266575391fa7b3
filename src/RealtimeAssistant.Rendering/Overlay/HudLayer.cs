using System.Diagnostics;
using System.Drawing;
using System.Globalization;
using System.Text;
using Silk.NET.OpenGL;
using SkiaSharp;

namespace RealtimeAssistant.Rendering;

/// <summary>
/// The performance HUD, top left: a text block (stage names and times, fps, caption rate, latency,
/// drops) with a bar per stage beside it, a frame-budget line across the bars, and a rolling
/// frame-time graph below. Bars and graph are flat quads redrawn every frame (cheap); the text is
/// re-rasterised at most every <see cref="RefreshInterval"/>, since Skia is the costly part.
/// </summary>
internal sealed class HudLayer : IDisposable
{
    public const int GraphSamples = 120;
    private const int Margin = 8, Pad = 6, GraphHeight = 56, MinBarWidth = 60;

    private static readonly Color Panel = Color.FromArgb(150, 0, 0, 0);
    private static readonly Color BarOk = Color.FromArgb(230, 80, 200, 120);
    private static readonly Color BarOver = Color.FromArgb(230, 235, 80, 60);
    private static readonly Color BarTrack = Color.FromArgb(60, 255, 255, 255);
    private static readonly Color P50Tick = Color.FromArgb(255, 255, 255, 255);
    private static readonly Color Budget = Color.FromArgb(255, 255, 210, 0);

    private readonly TextRasterizer _mono;
    private readonly CachedText _text;
    private readonly float _columnWidth;   // width of the text column, measured once
    private const long NeverRefreshed = long.MinValue;
    private long _lastRefresh = NeverRefreshed;
    private int _lastStageCount = -1;
    private readonly List<string> _stageNames = new();

    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromMilliseconds(250);
    public int RasterCount => _text.RasterCount;

    /// <summary>Where the text block went in the last frame (for drawing it after the solids).</summary>
    public RectF TextRect { get; private set; }

    public HudLayer(GL gl, TextRasterizer mono)
    {
        _mono = mono;
        _text = new CachedText(gl, mono);
        _columnWidth = mono.Measure(FormatStage("preprocess", 9999.9, 9999.9)) + 2 * mono.Padding + 2;
    }

    /// <summary>Queues the panel, bars and graph into <paramref name="solids"/>; returns the panel's rectangle.</summary>
    public RectF Layout(HudStats hud, int outW, int outH, SolidBatch solids)
    {
        OrderStages(hud);
        RefreshTextIfDue(hud, outW);

        float lineH = _mono.LineHeight;
        float panelW = Math.Min(outW - 2 * Margin, _columnWidth + MinBarWidth * 3 + 2 * Pad);
        var textRect = new RectF(Margin + Pad, Margin + Pad, _text.Width, _text.Height);
        float graphTop = textRect.Y + Math.Max(_text.Height, lineH * (_stageNames.Count + 4)) + Pad;
        var panel = new RectF(Margin, Margin, panelW, graphTop + GraphHeight + Pad - Margin);
        TextRect = textRect;
        solids.Add(panel, Panel);

        // Bars sit beside the stage rows, which start one line down (under the header row).
        float barX = textRect.X + _columnWidth;
        float barW = panel.Right - Pad - barX;
        if (barW >= 10) AddBars(hud, solids, barX, barW, textRect.Y + _mono.Padding + lineH, lineH);

        AddGraph(hud, solids, new RectF(panel.X + Pad, graphTop, panel.Width - 2 * Pad, GraphHeight));
        return panel;
    }

    private void AddBars(HudStats hud, SolidBatch solids, float x, float width, float top, float lineH)
    {
        double max = hud.BudgetMs * 1.25;
        foreach (string name in _stageNames)
        {
            var (last, p50) = hud.Stages[name];
            max = Math.Max(max, Math.Max(last, p50));
        }
        float Scale(double ms) => (float)(Math.Clamp(ms / max, 0, 1) * width);

        float barH = MathF.Max(3, lineH * 0.6f);
        for (int i = 0; i < _stageNames.Count; i++)
        {
            var (last, p50) = hud.Stages[_stageNames[i]];
            float y = top + i * lineH + (lineH - barH) / 2;
            solids.Add(new RectF(x, y, width, barH), BarTrack);
            solids.Add(new RectF(x, y, Scale(last), barH), hud.StageBudgetMs(_stageNames[i]) is { } budget && last > budget ? BarOver : BarOk);
            solids.Add(new RectF(x + Scale(p50) - 1, y - 1, 2, barH + 2), P50Tick);
        }
        if (hud.BudgetMs > 0 && _stageNames.Count > 0)
            solids.Add(new RectF(x + Scale(hud.BudgetMs), top, 2, lineH * _stageNames.Count), Budget);
    }

    private static void AddGraph(HudStats hud, SolidBatch solids, RectF area)
    {
        solids.Add(area, BarTrack);
        var times = hud.FrameTimesMs;
        int n = Math.Min(times.Count, GraphSamples);
        double max = hud.BudgetMs * 1.5;
        for (int i = times.Count - n; i < times.Count; i++) max = Math.Max(max, times[i]);
        if (max <= 0) return;

        float colW = area.Width / GraphSamples;
        // Newest sample at the right edge, so the graph scrolls left as time passes.
        float x0 = area.Right - n * colW;
        for (int i = 0; i < n; i++)
        {
            double ms = times[times.Count - n + i];
            float h = (float)(Math.Clamp(ms / max, 0, 1) * area.Height);
            solids.Add(new RectF(x0 + i * colW, area.Bottom - h, MathF.Max(1, colW), h), HudStats.IsLateFrame(ms, hud.BudgetMs) ? BarOver : BarOk);
        }
        float budgetY = area.Bottom - (float)(hud.BudgetMs / max * area.Height);
        solids.Add(new RectF(area.X, budgetY - 1, area.Width, 2), Budget);
    }

    /// <summary>Makes the next frame re-rasterise the numbers (e.g. for a screenshot that must be exact).</summary>
    public void RefreshNow() => _lastRefresh = NeverRefreshed;

    private void OrderStages(HudStats hud)
    {
        _stageNames.Clear();
        foreach (string s in HudStats.StageOrder)
            if (hud.Stages.ContainsKey(s)) _stageNames.Add(s);
        foreach (string s in hud.Stages.Keys)
            if (!HudStats.StageOrder.Contains(s)) _stageNames.Add(s);
    }

    private void RefreshTextIfDue(HudStats hud, int outW)
    {
        long now = Stopwatch.GetTimestamp();
        bool due = _lastRefresh == NeverRefreshed
                   || _stageNames.Count != _lastStageCount
                   || Stopwatch.GetElapsedTime(_lastRefresh, now) >= RefreshInterval;
        if (!due) return;
        _lastRefresh = now;
        _lastStageCount = _stageNames.Count;
        _text.Set(FormatText(hud), outW - 2 * Margin, int.MaxValue, SKColors.White);
    }

    private string FormatText(HudStats hud)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(string.Format(inv, "{0,-10}{1,7}{2,7}", "ms", "last", "p50")).Append('\n');
        foreach (string name in _stageNames)
        {
            var (last, p50) = hud.Stages[name];
            sb.Append(FormatStage(name, last, p50)).Append('\n');
        }
        sb.Append(string.Format(inv, "fps {0:F1}  captions {1:F1}/s", hud.Fps, hud.CaptionHz)).Append('\n');
        sb.Append(string.Format(inv, "glass->caption p50 {0:F0} p95 {1:F0} ms", hud.LatencyP50Ms, hud.LatencyP95Ms)).Append('\n');
        if (hud.FirstWordP95Ms > 0)
            sb.Append(string.Format(inv, "  first word p50 {0:F0} p95 {1:F0} ms", hud.FirstWordP50Ms, hud.FirstWordP95Ms)).Append('\n');
        sb.Append(string.Format(inv, "dropped {0}  render budget {1:F1} ms", hud.DroppedFrames, hud.BudgetMs));
        if (hud.Mode is { } mode)
        {
            sb.Append('\n').Append(string.Format(inv, "{0} read {1:F1}", mode, hud.ReadMs ?? 0));
            sb.Append(hud.ReadBudgetMs is { } rb ? string.Format(inv, "/{0:F0} ms", rb) : " ms");
            sb.Append(hud.Budget is { } k ? string.Format(inv, "  k {0}", k) : hud.Level is null ? "  unpruned" : "");
            if (BudgetLine(hud) is { } held) sb.Append('\n').Append(held);
            if (hud.Level is { } level) sb.Append('\n').Append(LevelLines(level, 34));
        }
        return sb.ToString();
    }

    /// <summary>
    /// How well the frame budget is held: the reads that ran over it, and, where the pacing skips
    /// frames no level can fit, the frames skipped. Live pacing never skips, so its line has no
    /// "skipped" that could only read 0; its frames replaced unread are in "dropped". Null: no budget.
    /// </summary>
    internal static string? BudgetLine(HudStats hud)
    {
        if (hud.ReadBudgetMs is null) return null;
        var line = string.Format(CultureInfo.InvariantCulture, "over budget {0} of {1} reads", hud.ReadsOverBudget, hud.Reads);
        return hud.SkipsFrames ? line + string.Format(CultureInfo.InvariantCulture, "  skipped {0}", hud.SkippedFrames) : line;
    }

    /// <summary>
    /// A level's name in lines of at most <paramref name="width"/> characters, broken after its
    /// commas ("newest spared, older exit 7" then "max 100352 px"), two lines at most.
    /// </summary>
    internal static string LevelLines(string level, int width)
    {
        var lines = new List<string>();
        foreach (var part in level.Split(", "))
        {
            if (lines.Count > 0 && lines[^1].Length + 2 + part.Length <= width) lines[^1] += ", " + part;
            else lines.Add(part);
        }
        if (lines.Count > 2) lines = [lines[0], string.Join(", ", lines.Skip(1))];
        return string.Join("\n", lines.Select(l => l.Length > width ? l[..width] : l));
    }

    private static string FormatStage(string name, double last, double p50) =>
        string.Format(CultureInfo.InvariantCulture, "{0,-10}{1,7:F1}{2,7:F1}", name.Length > 10 ? name[..10] : name, last, p50);

    public void BindText() => _text.Bind();
    public bool HasText => !_text.IsEmpty;

    public void Dispose() => _text.Dispose();
}

using System.CommandLine;
using RealtimeAssistant.Model;
using RealtimeAssistant.Training;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra eval`: attribute F1 and QA accuracy of a model on held-out scenes.</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = App.AppModel.ModelOption();
        // 600 questions put QA's standard error near 0.012; at 150 one answer moved a kind's score by 0.05–0.15.
        var scenes = new Option<int>("--scenes") { DefaultValueFactory = _ => 600, Description = "held-out scenes (each gives one caption and one question); about 1 min at 600" };
        var json = Cli.JsonOption("write the report as JSON (keys include f1 and qa_accuracy)");
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var cmd = new Command("eval", "Evaluate a demo model on held-out scenes: caption attribute P/R/F1 and QA accuracy.")
            { model, scenes, json, device, dtype, weights };
        return cmd.WithAction((pr, ct) =>
        {
            var dir = App.AppModel.Resolve(pr.GetValue(model));
            using var engine = Engine.Load(dir, Cli.EngineOptions(pr, device, dtype, weights));
            var n = pr.GetValue(scenes);
            EvalReport report = null!;
            AnsiConsole.Progress().Start(ctx =>
            {
                var task = ctx.AddTask("evaluating", maxValue: n);
                report = DemoEvaluator.Run(engine, n, new Progress(v => task.Value = v), ct);
            });
            var table = new Table().AddColumns("metric", "value");
            table.AddRow("held-out scenes", report.Scenes.ToString());
            table.AddRow("caption precision", report.Precision.ToString("0.000"));
            table.AddRow("caption recall", report.Recall.ToString("0.000"));
            table.AddRow("caption F1", report.F1.ToString("0.000"));
            table.AddRow("  F1, still frames", report.F1Still.ToString("0.000"));
            table.AddRow("  F1, two frames (with motion)", report.F1Motion.ToString("0.000"));
            foreach (var (k, v) in report.AttributeF1) table.AddRow($"  F1, {k} only", v.ToString("0.000"));
            table.AddRow("object F1 (colour and shape both right)", report.ObjectF1.ToString("0.000"));
            table.AddRow("QA accuracy", $"{report.QaAccuracy:0.000} ({report.Questions} questions)");
            foreach (var (k, v) in report.QaAccuracyByKind) table.AddRow($"  QA, \"{k} …\"", v.ToString("0.000"));
            table.AddRow("caption ms (median, 1 frame)", report.CaptionMsMedian.ToString("0.0"));
            AnsiConsole.Write(table);
            foreach (var (r, p) in report.Examples.Take(4))
                AnsiConsole.MarkupLine($"[grey]truth:[/] {Markup.Escape(r)}\n[grey]model:[/] {Markup.Escape(p)}");
            foreach (var (q, a, p) in report.QaMistakes.Take(6))
                AnsiConsole.MarkupLine($"[grey]wrong:[/] {Markup.Escape(q)} [grey]truth:[/] {Markup.Escape(a)} [grey]model:[/] {Markup.Escape(p)}");
            if (pr.GetValue(json) is { } path)
                Cli.WriteJson(path, new
                {
                    model = dir, scenes = report.Scenes, precision = report.Precision, recall = report.Recall, f1 = report.F1,
                    f1_still = report.F1Still, f1_motion = report.F1Motion, object_f1 = report.ObjectF1, attribute_f1 = report.AttributeF1, qa_accuracy = report.QaAccuracy, questions = report.Questions,
                    qa_accuracy_by_kind = report.QaAccuracyByKind,
                    qa_mistakes = report.QaMistakes.Select(m => new { question = m.Question, answer = m.Answer, predicted = m.Predicted }),
                    caption_ms_median = report.CaptionMsMedian,
                });
            return Task.FromResult(0);
        });
    }

    sealed class Progress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }
}

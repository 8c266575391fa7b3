using System.CommandLine;
using RealtimeAssistant.Cluster;
using Spectre.Console;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>`ra cluster status` and `ra cluster drain SILO`: a cluster's silos and streams, and moving a silo's streams before maintenance.</summary>
public static class ClusterCommand
{
    public static Command Create()
    {
        var cmd = new Command("cluster", "Look at and manage a cluster of `ra serve --cluster` silos.");
        cmd.Subcommands.Add(Status());
        cmd.Subcommands.Add(Drain());
        return cmd;
    }

    static Command Status()
    {
        var flags = new ClusterFlags(required: true);
        var cmd = new Command("status", "The cluster's silos (name, address, status) and the streams each holds.");
        flags.AddTo(cmd);
        return cmd.WithAction(async (pr, ct) =>
        {
            await using var admin = await ClusterAdmin.ConnectAsync(flags.Settings(pr), ct);
            var silos = await ClusterAdmin.StatusAsync(admin.Client);
            var table = new Table().AddColumns("silo", "address", "status", "streams", "");
            foreach (var s in silos)
                table.AddRow(Markup.Escape(s.Name), Markup.Escape(s.Address), s.Status, s.Streams.Length.ToString(), s.Draining ? "draining" : "");
            AnsiConsole.Write(table);
            return 0;
        });
    }

    static Command Drain()
    {
        var flags = new ClusterFlags(required: true);
        var silo = new Argument<string>("silo") { Description = "the silo's name (--silo-name; ra cluster status lists them) or address" };
        var timeout = new Option<double>("--timeout") { Description = "seconds to wait for every stream to move", DefaultValueFactory = _ => 120 };
        var cmd = new Command("drain", "Move every stream off a silo by grain migration (each flushes its caption log and continues on another inference silo " +
            "with no gap), and place no new stream there. Then the silo can be stopped for maintenance.") { silo, timeout };
        flags.AddTo(cmd);
        return cmd.WithAction(async (pr, ct) =>
        {
            if (pr.GetValue(timeout) is not (> 0 and <= 3600)) throw new UserError("--timeout must be 1..3600 seconds");
            await using var admin = await ClusterAdmin.ConnectAsync(flags.Settings(pr), ct);
            var address = await ClusterAdmin.FindSiloAsync(admin.Client, pr.GetValue(silo)!);
            var moved = await ClusterAdmin.DrainAsync(admin.Client, address, TimeSpan.FromSeconds(pr.GetValue(timeout)), ct);
            foreach (var m in moved)
                Console.Out.WriteLine($"moved {m.Stream}: {m.From} → {m.To} after segment {m.SeqBefore} ({m.Seconds:0.0} s; now at {m.SeqAfter})");
            Console.Out.WriteLine($"drained {pr.GetValue(silo)}: {moved.Count} stream(s) moved; no new stream will be placed there");
            return 0;
        });
    }
}

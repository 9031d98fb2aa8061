"""The limits resource and limits/recordCount."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sforg.api.http import Api, json_response


class LimitsApi(Api):
    def record_count(self, request: web.Request) -> web.Response:
        """`{"sObjects": [{"count", "name"}]}`: a named object the org lacks is left out (documented), and so is one
        without records (recorded: `{"sObjects" : [ ]}` for such an object, in CumulusCI's cassettes)."""
        org = self.org
        names = [n for n in request.query.get("sObjects", "").split(",") if n] or list(org.catalogue)
        by_name = {o.lower(): o for o in org.catalogue}
        counts = [(org.record_count(by_name[n.lower()]), by_name[n.lower()]) for n in names if n.lower() in by_name]
        return json_response({"sObjects": [{"count": n, "name": name} for n, name in counts if n]})

    def limits(self) -> dict[str, Any]:
        org = self.org
        used, mx = org.api_used, org.settings["api_max"]
        jobs = org.bulk_jobs_created

        def lim(m: int, r: int) -> dict[str, int]:
            return {"Max": m, "Remaining": max(0, r)}

        return {
            "ActiveScratchOrgs": lim(3, 3),
            "AnalyticsExternalDataSizeMB": lim(40960, 40960),
            "ConcurrentAsyncGetReportInstances": lim(200, 200),
            "ConcurrentEinsteinDataInsightsStoryCreation": lim(5, 5),
            "ConcurrentSyncReportRuns": lim(20, 20),
            "DailyAnalyticsDataflowJobExecutions": lim(60, 60),
            "DailyApiRequests": lim(mx, mx - used),
            "DailyAsyncApexExecutions": lim(250000, 250000),
            "DailyBulkApiBatches": lim(15000, 15000),
            "DailyBulkV2QueryFileStorageMB": lim(976562, 976562),
            "DailyBulkV2QueryJobs": lim(org.settings["bulk_jobs_max"], org.settings["bulk_jobs_max"] - jobs),
            "DailyDurableGenericStreamingApiEvents": lim(10000, 10000),
            "DailyDurableStreamingApiEvents": lim(10000, 10000),
            "DailyGenericStreamingApiEvents": lim(10000, 10000),
            "DailyStandardVolumePlatformEvents": lim(10000, 10000),
            "DailyStreamingApiEvents": lim(10000, 10000),
            "DailyWorkflowEmails": lim(1000, 1000),
            "DataStorageMB": lim(1024, 800),
            "DurableStreamingApiConcurrentClients": lim(20, 20),
            "FileStorageMB": lim(10240, 8000),
            "HourlyAsyncReportRuns": lim(1200, 1200),
            "HourlyDashboardRefreshes": lim(200, 200),
            "HourlyDashboardResults": lim(5000, 5000),
            "HourlyDashboardStatuses": lim(999999999, 999999999),
            "HourlyODataCallout": lim(10000, 10000),
            "HourlySyncReportRuns": lim(500, 500),
            "HourlyTimeBasedWorkflow": lim(50, 50),
            "MassEmail": lim(10, 10),
            "MonthlyPlatformEventsUsageEntitlement": lim(0, 0),
            "Package2VersionCreates": lim(6, 6),
            "PermissionSets": lim(1500, 1490),
            "SingleEmail": lim(15, 15),
            "StreamingApiConcurrentClients": lim(20, 20),
        }

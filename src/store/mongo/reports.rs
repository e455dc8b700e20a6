//! Reports on MongoDB (`report_messages`): the bodies of the [`Store`](super::Store) report
//! operations, which `operations.rs` hands on to.

use futures_util::stream::TryStreamExt;
use mongodb::bson::doc;
use mongodb::bson::oid::ObjectId;

use super::documents::{ReportDoc, bson_time, oid};
use super::indexes::*;
use super::queries::*;
use super::{MongoStore, StoreError, StoreResult, db_err};
use crate::domain::{NewReport, Report, ReportId, ReportQuery, Timestamp, now};

impl MongoStore {
    async fn find_report(&self, id: ObjectId) -> StoreResult<Option<Report>> {
        Ok(self
            .0
            .reports
            .find_one(doc! { "_id": id })
            .await
            .map_err(db_err)?
            .map(Report::from))
    }

    pub(super) async fn insert_report(&self, r: NewReport) -> StoreResult<Report> {
        self.bounded(async {
            self.ensure_indexes().await?;
            let doc = ReportDoc {
                id: oid(r.id.as_str())?,
                user_id: r.user_id,
                order_id: r.order_id,
                payment_id: r.payment_id,
                invoice_id: r.invoice_id,
                title: r.title,
                message: r.message,
                status: r.status,
                sent_by: r.sent_by,
                sent_by_name: r.sent_by_name,
                is_read: false,
                read_at: None,
                created_at: bson_time(now()),
            };
            self.0.reports.insert_one(&doc).await.map_err(db_err)?;
            Ok(Report::from(doc))
        })
        .await
    }

    pub(super) async fn report_by_id(&self, id: &ReportId) -> StoreResult<Option<Report>> {
        let id = oid(id.as_str())?;
        self.bounded(async {
            self.ensure_indexes().await?;
            self.find_report(id).await
        })
        .await
    }

    pub(super) async fn report_page(&self, query: &ReportQuery) -> StoreResult<Vec<Report>> {
        let (filter, index) = report_list_query(query)?;
        self.bounded(async {
            self.ensure_indexes().await?;
            let docs: Vec<ReportDoc> = self
                .0
                .reports
                .find(filter)
                .sort(report_list_sort())
                .limit(query.limit as i64)
                .hint(hint(index))
                .await
                .map_err(db_err)?
                .try_collect()
                .await
                .map_err(db_err)?;
            Ok(docs.into_iter().map(Report::from).collect())
        })
        .await
    }

    pub(super) async fn set_report_read(
        &self,
        id: &ReportId,
        at: Timestamp,
    ) -> StoreResult<Report> {
        let id = oid(id.as_str())?;
        self.bounded(async {
            self.ensure_indexes().await?;
            // Only an unread report changes, so the first readAt is kept.
            self.0
                .reports
                .update_one(
                    doc! { "_id": id, "isRead": false },
                    doc! { "$set": { "isRead": true, "readAt": bson_time(at) } },
                )
                .hint(hint(IX_ID))
                .await
                .map_err(db_err)?;
            self.find_report(id)
                .await?
                .ok_or(StoreError::NotFound("report"))
        })
        .await
    }

    pub(super) async fn count_unread_reports(&self, user_id: &str) -> StoreResult<u64> {
        self.bounded(async {
            self.ensure_indexes().await?;
            self.0
                .reports
                .count_documents(unread_reports_filter(user_id))
                .hint(hint(IX_REPORTS_USER))
                .await
                .map_err(db_err)
        })
        .await
    }
}

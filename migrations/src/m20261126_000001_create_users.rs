use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Users::Id))
                    .col(string_len_uniq(Users::Username, 150))
                    .col(string_len(Users::Name, 150).default(""))
                    .col(string_len(Users::Email, 254).default(""))
                    .col(string(Users::PasswordHash))
                    .col(boolean(Users::IsStaff).default(false))
                    .col(boolean(Users::IsSuperuser).default(false))
                    .col(boolean(Users::IsActive).default(true))
                    .col(big_integer(Users::DateJoined))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub(crate) enum Users {
    Table,
    Id,
    Username,
    Name,
    Email,
    PasswordHash,
    IsStaff,
    IsSuperuser,
    IsActive,
    DateJoined,
}
